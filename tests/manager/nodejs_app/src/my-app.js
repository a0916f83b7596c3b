exports.handler = async () => require('./helper').name;
