import { basename } from 'path';
export const handler = async () => basename('/a/esm');
