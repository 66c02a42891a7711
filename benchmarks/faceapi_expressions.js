#!/usr/bin/env node
// face-api's expression net run by its own JavaScript implementation, for benchmarks/peers.py.
//
//   node benchmarks/faceapi_expressions.js --node-modules DIR --weights DIR \
//       --faces faces.npy --out probabilities.json
//
// DIR holds @vladmandic/face-api and @tensorflow/tfjs (pure JavaScript CPU backend; the
// node-wasm build of face-api also needs @tensorflow/tfjs-backend-wasm to be present).
// faces.npy: uint8 (n, H, W, 3) RGB face crops at their own size. Each is handed to
// predictExpressions as a tensor, as face-api's pipeline hands it a detected face: face-api
// pads it to a square, resizes it to 112x112 and normalises it itself.
// The output: {"labels": [face-api's 7 names, in its order], "probabilities": [[7] per face],
// "backend": ..., "face_api_version": ...}.
'use strict';

const fs = require('fs');
const path = require('path');

function options(argv) {
  const wanted = { '--node-modules': 'nodeModules', '--weights': 'weights', '--faces': 'faces', '--out': 'out', '--batch': 'batch' };
  const out = { batch: '64' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = wanted[argv[i]];
    if (!key || i + 1 >= argv.length) fail(`unknown or incomplete option ${argv[i]}`);
    out[key] = argv[i + 1];
  }
  for (const key of ['nodeModules', 'weights', 'faces', 'out']) {
    if (!out[key]) fail(`missing option for ${key}`);
  }
  return out;
}

function fail(message) {
  process.stderr.write(`faceapi_expressions: ${message}\n`);
  process.exit(2);
}

// A .npy file of uint8 faces (format versions 1 and 2, C order).
function readNpy(file) {
  const buffer = fs.readFileSync(file);
  if (buffer.slice(0, 6).toString('latin1') !== '\x93NUMPY') fail(`${file} is not a .npy file`);
  const major = buffer[6];
  const headerLength = major === 1 ? buffer.readUInt16LE(8) : buffer.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buffer.slice(start, start + headerLength).toString('latin1');
  if (!/'descr':\s*'\|u1'/.test(header) || /'fortran_order':\s*True/.test(header)) {
    fail(`${file} must hold uint8 faces in C order (${header.trim()})`);
  }
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  if (shape.length !== 4 || shape[3] !== 3) fail(`${file} must hold (n, H, W, 3) faces, not (${shape})`);
  const data = new Uint8Array(buffer.buffer, buffer.byteOffset + start + headerLength, shape.reduce((a, b) => a * b, 1));
  return { data, shape };
}

async function main() {
  const args = options(process.argv.slice(2));
  let faceapi;
  try {
    faceapi = require(path.join(path.resolve(args.nodeModules), '@vladmandic', 'face-api', 'dist', 'face-api.node-wasm.js'));
  } catch (error) {
    fail(`cannot load @vladmandic/face-api from ${args.nodeModules}: ${error.message.split('\n')[0]}`);
  }
  const { tf } = faceapi;
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceExpressionNet.loadFromDisk(args.weights);

  const { data, shape } = readNpy(args.faces);
  const [n, height, width] = shape;
  const size = height * width * 3;
  const batch = Number(args.batch);
  const probabilities = [];
  for (let first = 0; first < n; first += batch) {
    const faces = [];
    for (let i = first; i < Math.min(n, first + batch); i += 1) {
      faces.push(tf.tensor3d(data.subarray(i * size, (i + 1) * size), [height, width, 3], 'int32'));
    }
    const predictions = await faceapi.nets.faceExpressionNet.predictExpressions(faces);
    for (const p of predictions) probabilities.push(faceapi.FACE_EXPRESSION_LABELS.map((label) => p[label]));
    faces.forEach((t) => t.dispose());
  }
  const out = {
    labels: Array.from(faceapi.FACE_EXPRESSION_LABELS),
    probabilities,
    backend: tf.getBackend(),
    face_api_version: faceapi.version,
    tfjs_version: tf.version_core,
  };
  fs.writeFileSync(args.out, JSON.stringify(out));
}

main().catch((error) => fail(error.message));
