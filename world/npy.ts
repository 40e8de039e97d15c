/**
 * Minimal .npy (format version 1.0) writer: the header is written by hand (magic \x93NUMPY,
 * version 1.0, little-endian uint16 header length, the header dict padded with spaces to a
 * multiple of 64 bytes), then raw little-endian data, streamed in chunks so arrays bigger than
 * memory-friendly buffers never exist in one piece. numpy.load reads the files directly.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

export type NpyDescr = '<i8' | '<i4' | '<i2' | '|i1' | '|u1' | '<f4' | '<f8';

const kItemSize: Record<NpyDescr, number> = { '<i8': 8, '<i4': 4, '<i2': 2, '|i1': 1, '|u1': 1, '<f4': 4, '<f8': 8 };
const kChunk = 1 << 16;

export function npyHeader(descr: NpyDescr, shape: readonly number[]): Buffer {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const unpadded = 10 + dict.length + 1;
  const total = Math.ceil(unpadded / 64) * 64;
  const header = Buffer.alloc(total, 0x20);
  header.write('\x93NUMPY', 0, 'latin1');
  header[6] = 1;
  header[7] = 0;
  header.writeUInt16LE(total - 10, 8);
  header.write(dict, 10, 'latin1');
  header[total - 1] = 0x0a;
  return header;
}

export class NpyWriter {
  readonly #fd: number;
  readonly #path: string;
  readonly #expected: number;
  readonly #itemSize: number;
  #written = 0;
  #int64Scratch = new Int32Array(kChunk * 2);

  constructor(path: string, descr: NpyDescr, shape: readonly number[]) {
    this.#path = path;
    this.#fd = openSync(path, 'w');
    this.#expected = shape.reduce((a, b) => a * b, 1);
    this.#itemSize = kItemSize[descr];
    writeSync(this.#fd, npyHeader(descr, shape));
  }

  /** Append raw elements (the typed array's element size must match the descr). */
  write(data: ArrayBufferView & { length: number }): void {
    if (data.byteLength !== data.length * this.#itemSize) throw new Error(`npy ${this.#path}: element size mismatch`);
    let offset = 0;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    while (offset < bytes.length) offset += writeSync(this.#fd, bytes, offset, Math.min(bytes.length - offset, 1 << 24));
    this.#written += data.length;
  }

  /** Append int64 elements given as numbers (exact integers up to 2^53): f(i) for i in [0, n). */
  writeInt64(n: number, f: (i: number) => number): void {
    const scratch = this.#int64Scratch;
    for (let start = 0; start < n; start += kChunk) {
      const count = Math.min(kChunk, n - start);
      for (let i = 0; i < count; i++) {
        const v = f(start + i);
        const low = v % 4294967296;
        const lowFixed = low < 0 ? low + 4294967296 : low;
        scratch[2 * i] = lowFixed | 0;
        scratch[2 * i + 1] = Math.floor(v / 4294967296) | 0;
      }
      this.write(new BigInt64Array(scratch.buffer, 0, count));
    }
  }

  close(): void {
    closeSync(this.#fd);
    if (this.#written !== this.#expected) throw new Error(`npy ${this.#path}: wrote ${this.#written} elements, header says ${this.#expected}`);
  }
}

/** Write one whole array. */
export function writeNpy(path: string, descr: NpyDescr, shape: readonly number[], data: ArrayBufferView & { length: number }): void {
  const w = new NpyWriter(path, descr, shape);
  w.write(data);
  w.close();
}

/** Write an int64 array from numbers. */
export function writeNpyInt64(path: string, shape: readonly number[], n: number, f: (i: number) => number): void {
  const w = new NpyWriter(path, '<i8', shape);
  w.writeInt64(n, f);
  w.close();
}

export interface NpyArray {
  descr: string;
  shape: number[];
  fortranOrder: boolean;
  /** Raw little-endian data (a copy, aligned). */
  data: Buffer;
}

/** Parse a .npy file's bytes (version 1.0 / 2.0); used by tests and tools. */
export function parseNpy(bytes: Buffer): NpyArray {
  if (bytes.subarray(0, 6).toString('latin1') !== '\x93NUMPY') throw new Error('not a .npy file');
  const major = bytes[6];
  const headerLen = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = bytes.subarray(start, start + headerLen).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new Error(`bad npy header: ${header}`);
  const shape = shapeText
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '')
    .map(Number);
  return { descr, shape, fortranOrder: fortran === 'True', data: Buffer.from(bytes.subarray(start + headerLen)) };
}

/** Typed view of parsed .npy data (int64 as BigInt64Array). */
export function npyValues(array: NpyArray): ArrayLike<number | bigint> {
  const { data } = array;
  const buf = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  switch (array.descr) {
    case '<i8':
      return new BigInt64Array(buf);
    case '<i4':
      return new Int32Array(buf);
    case '<i2':
      return new Int16Array(buf);
    case '|i1':
      return new Int8Array(buf);
    case '|u1':
      return new Uint8Array(buf);
    case '<f4':
      return new Float32Array(buf);
    case '<f8':
      return new Float64Array(buf);
    default:
      throw new Error(`unsupported descr ${array.descr}`);
  }
}
