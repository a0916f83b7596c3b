const pad = require('left-pad-ish');
exports.handler = async (e) => pad(e.s, 5);
