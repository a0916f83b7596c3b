console.log('booting');
class BootError extends Error { constructor(m) { super(m); this.name = 'BootError'; } }
throw new BootError('cannot start');
