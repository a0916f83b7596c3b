'use strict';
// What a call leaves running: every process it started is killed when it returns, as the
// Python runtime does (its reaping.py). The process backend makes the bootstrap a child
// subreaper before exec (it survives exec), so double-forked orphans stay its descendants and
// are found by walking /proc; Node cannot collect the exit status of an adopted orphan (libuv
// waits only for its own children), so such a process stays a zombie until the container goes.

const fs = require('fs');

function children(pid) {
  let threads;
  try {
    threads = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const found = [];
  for (const tid of threads) {
    try {
      const text = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1').trim();
      if (text) found.push(...text.split(/\s+/).map(Number));
    } catch {
      // the thread ended meanwhile, or no /proc: nothing to find there
    }
  }
  return found;
}

function zombie(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'latin1').split(')').pop().trim().startsWith('Z');
  } catch {
    return true;
  }
}

// Kill every live descendant of this process; how many were killed.
function killLeftovers() {
  const killed = new Set();
  for (let round = 0; round < 100; round++) {
    const stack = [process.pid];
    const found = [];
    while (stack.length) {
      for (const pid of children(stack.pop())) {
        if (!killed.has(pid) && !found.includes(pid)) {
          found.push(pid);
          stack.push(pid);
        }
      }
    }
    const live = found.filter((pid) => !zombie(pid));
    if (!live.length) break;
    for (const pid of live) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
      killed.add(pid);
    }
  }
  return killed.size;
}

module.exports = { killLeftovers };
