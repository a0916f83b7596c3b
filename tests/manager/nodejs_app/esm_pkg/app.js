export async function handler() { return import.meta.url.endsWith('app.js'); }
