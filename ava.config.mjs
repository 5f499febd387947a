// ffi-rs crashes a process whose worker thread loaded it when that thread exits, so every
// test file runs in a child process, never a worker thread.
export default {
  workerThreads: false,
  timeout: '120s',
  concurrency: 1,
};
