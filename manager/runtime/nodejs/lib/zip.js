'use strict';
// Unpacking a function's (or a layer's) zip without dependencies: the central directory read
// with Buffer, entries inflated with zlib. Every entry is checked before any is written, so a
// refused zip leaves nothing behind, as the Python runtime's zipfile.extractall after its check.
// Stored (0) and deflated (8) entries, ZIP64 sizes and offsets; symlink entries are written as
// files holding the link's text, as Python's zipfile writes them.

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { RequestError } = require('./errors');

const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
const EOCD64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

const invalid = (message) => new RequestError(400, 'InvalidCodeZip', message);

function findEnd(buf) {
  // the end record sits in the last 64 KiB + 22 bytes (its comment is at most 64 KiB)
  for (let at = buf.length - 22; at >= Math.max(0, buf.length - 65557); at--) {
    if (buf.readUInt32LE(at) === EOCD) return at;
  }
  throw invalid('code_zip_b64: File is not a zip file');
}

function directory(buf) {
  const end = findEnd(buf);
  let count = buf.readUInt16LE(end + 10);
  let offset = buf.readUInt32LE(end + 16);
  const locator = end - 20;
  if (locator >= 0 && buf.readUInt32LE(locator) === EOCD64_LOCATOR) {
    const end64 = Number(buf.readBigUInt64LE(locator + 8));
    if (end64 + 56 > buf.length || buf.readUInt32LE(end64) !== EOCD64) throw invalid('corrupt zip: bad ZIP64 end record');
    count = Number(buf.readBigUInt64LE(end64 + 32));
    offset = Number(buf.readBigUInt64LE(end64 + 48));
  }
  const entries = [];
  for (let i = 0; i < count; i++) {
    if (offset + 46 > buf.length || buf.readUInt32LE(offset) !== CENTRAL) throw invalid('corrupt zip: bad central directory');
    const entry = {
      method: buf.readUInt16LE(offset + 10),
      flags: buf.readUInt16LE(offset + 8),
      compressed: buf.readUInt32LE(offset + 20),
      size: buf.readUInt32LE(offset + 24),
      local: buf.readUInt32LE(offset + 42),
    };
    const nameLength = buf.readUInt16LE(offset + 28);
    const extraLength = buf.readUInt16LE(offset + 30);
    const commentLength = buf.readUInt16LE(offset + 32);
    const nameBytes = buf.subarray(offset + 46, offset + 46 + nameLength);
    entry.name = nameBytes.toString(entry.flags & 0x800 ? 'utf8' : 'latin1');
    zip64Extra(buf.subarray(offset + 46 + nameLength, offset + 46 + nameLength + extraLength), entry);
    entries.push(entry);
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

function zip64Extra(extra, entry) {
  for (let at = 0; at + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(at);
    const size = extra.readUInt16LE(at + 2);
    if (id === 0x0001) {
      let field = at + 4;
      for (const key of ['size', 'compressed', 'local']) {
        if (entry[key] === 0xffffffff && field + 8 <= at + 4 + size) {
          entry[key] = Number(extra.readBigUInt64LE(field));
          field += 8;
        }
      }
    }
    at += 4 + size;
  }
}

function isInside(name, root) {
  const parts = name.replace(/\\/g, '/').split('/');
  if (parts[0] === '' || parts.includes('..') || name.slice(1, 2) === ':' || name.includes('\0')) return false;
  const target = path.resolve(root, name);
  return target === root || target.startsWith(root + path.sep);
}

function data(buf, entry) {
  const at = entry.local;
  if (at + 30 > buf.length || buf.readUInt32LE(at) !== LOCAL) throw invalid(`corrupt zip: bad local header of ${entry.name}`);
  const start = at + 30 + buf.readUInt16LE(at + 26) + buf.readUInt16LE(at + 28);
  const raw = buf.subarray(start, start + entry.compressed);
  if (entry.method === 0) return raw;
  if (entry.method === 8) return zlib.inflateRawSync(raw);
  throw invalid(`corrupt zip: compression method ${entry.method} of ${entry.name} is not supported`);
}

// Extract the base64 zip into `root` (created if missing) after checking no entry escapes it.
function unpack(zipB64, root, what = 'code_zip_b64') {
  const buf = Buffer.from(zipB64, 'base64');
  if (zipB64.length && !buf.length) throw invalid(`${what}: not base64`);
  const entries = directory(buf);
  const unsafe = entries.filter((e) => !isInside(e.name, root)).map((e) => e.name);
  if (unsafe.length) throw invalid(`zip entries escape the code dir: ${JSON.stringify(unsafe)}`);
  fs.mkdirSync(root, { recursive: true });
  for (const entry of entries) {
    const target = path.resolve(root, entry.name);
    if (entry.name.endsWith('/')) {
      fs.mkdirSync(target, { recursive: true });
      continue;
    }
    let bytes;
    try {
      bytes = data(buf, entry);
    } catch (err) {
      if (err instanceof RequestError) throw err;
      throw invalid(`corrupt zip: ${err.message}`);
    }
    try {
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, bytes);
    } catch (err) {
      // the function's doing (e.g. code larger than the container's /tmp): its size says so
      err.unzippedMb = entries.reduce((total, e) => total + e.size, 0) / 2 ** 20;
      throw err;
    }
  }
}

module.exports = { unpack, isInside };
