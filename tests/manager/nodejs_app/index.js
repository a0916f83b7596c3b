exports.handler = async (event) => ({ index: event });
