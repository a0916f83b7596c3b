exports.name = 'helper in src';
