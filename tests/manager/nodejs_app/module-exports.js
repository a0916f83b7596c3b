module.exports = { handler: async () => 'module.exports' };
