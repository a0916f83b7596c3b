exports.handler = async () => {{ ;
