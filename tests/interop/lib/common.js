'use strict';
// Helpers shared by flex_produce.js and flex_consume.js.
//
// stdout carries JSON lines only (one object per line); everything meant for
// humans, including pulsar-flex's own log, goes to stderr.

const path = require('path');

// ---------------------------------------------------------------- arguments

// Minimal "--name value" / "--flag" parser. `spec` maps option names to
// {type: 'string'|'int'|'bool'|'list', default}. Unknown options are fatal.
function parseArgs(argv, spec, usage) {
  const out = {};
  for (const [name, s] of Object.entries(spec)) {
    out[name] = s.type === 'list' ? [] : s.default;
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stderr.write(usage);
      process.exit(0);
    }
    if (!a.startsWith('--')) fatal(`unexpected argument '${a}'\n${usage}`, 64);
    let name = a.slice(2);
    let inline = null;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const s = spec[name];
    if (!s) fatal(`unknown option --${name}\n${usage}`, 64);
    if (s.type === 'bool') {
      out[name] = inline === null ? true : !/^(0|false|no)$/i.test(inline);
      continue;
    }
    let v = inline;
    if (v === null) {
      if (i + 1 >= argv.length) fatal(`option --${name} needs a value`, 64);
      v = argv[++i];
    }
    if (s.type === 'int') {
      if (!/^-?\d+$/.test(v)) fatal(`option --${name}: '${v}' is not an integer`, 64);
      out[name] = parseInt(v, 10);
    } else if (s.type === 'list') {
      out[name].push(v);
    } else {
      out[name] = v;
    }
  }
  for (const [name, s] of Object.entries(spec)) {
    if (s.required && (out[name] === undefined || out[name] === null || out[name] === '')) {
      fatal(`option --${name} is required\n${usage}`, 64);
    }
  }
  return out;
}

// "pulsar://host:port" (or "host:port") -> "host:port", the form pulsar-flex
// expects in `discoveryServers`. pulsar-flex has no TLS support, so
// pulsar+ssl:// is refused.
function discoveryServer(url) {
  const m = /^(?:(pulsar(?:\+ssl)?):\/\/)?([^/:]+|\[[^\]]+\]):(\d+)\/?$/.exec(url);
  if (!m) fatal(`cannot parse service URL '${url}' (want pulsar://host:port)`, 64);
  if (m[1] === 'pulsar+ssl') fatal('pulsar-flex does not support TLS (pulsar+ssl://)', 64);
  return `${m[2]}:${m[3]}`;
}

// "k=v" strings -> {k: v}; "%d" in a value is replaced by `index`.
function propsFor(list, index) {
  const props = {};
  for (const kv of list) {
    const eq = kv.indexOf('=');
    if (eq <= 0) fatal(`bad --prop '${kv}' (want key=value)`, 64);
    props[kv.slice(0, eq)] = kv.slice(eq + 1).replace(/%d/g, String(index));
  }
  return props;
}

function fill(template, index) {
  return template === undefined || template === null
    ? null
    : template.replace(/%d/g, String(index));
}

// ------------------------------------------------------------------- output

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function note(prog, msg) {
  process.stderr.write(`${prog}: ${msg}\n`);
}

let progName = path.basename(process.argv[1] || 'flex', '.js');

// Report and exit. stdout/stderr writes to files and pipes are synchronous
// on Linux, so nothing already emitted is lost.
function fatal(msg, code = 1) {
  process.stderr.write(`${progName}: FAIL: ${msg}\n`);
  process.exit(code);
}

function exitOk() {
  process.exit(0);
}

// A watchdog: pulsar-flex retries lookups and resends forever and keeps
// timers alive, so every script bounds its whole run.
function armTimeout(ms, what) {
  const t = setTimeout(() => {
    const detail = typeof what === 'function' ? what() : what;
    fatal(`timed out after ${ms} ms ${detail}`, 3);
  }, ms);
  return t;
}

// Resolve `p`, or reject with `msg` after `ms`.
function within(ms, p, msg) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(msg)), ms);
    }),
  ]);
}

// pulsar-flex's logger: route to stderr, one line per entry.
function flexLogCreator(prog) {
  return () =>
    ({ label, log }) => {
      process.stderr.write(`${prog}: [flex ${label}] ${log.message}\n`);
    };
}

function flexLogLevel(flex, name) {
  const lv = flex.logLevel[String(name || 'error').toUpperCase()];
  if (lv === undefined) fatal(`unknown --log-level '${name}'`, 64);
  return lv;
}

// Look up a protobuf enum value by a loosely spelled name
// ("Key_Shared", "key-shared", "KEY_SHARED" -> KEY_SHARED / KEYSHARED).
function enumValue(enumObj, name, what) {
  const norm = (x) => String(x).toUpperCase().replace(/[^A-Z0-9]/g, '');
  const k = Object.keys(enumObj).find((n) => norm(n) === norm(name));
  if (k === undefined) {
    fatal(`unknown ${what} '${name}' (one of ${Object.keys(enumObj).join(', ')})`, 64);
  }
  return enumObj[k];
}

function enumName(enumObj, value) {
  const k = Object.keys(enumObj).find((n) => enumObj[n] === value);
  return k === undefined ? String(value) : k;
}

// MessageIdData as pulsar-flex's protobuf toObject() renders it -> stable form.
function msgId(m) {
  if (!m) return null;
  return {
    ledgerId: m.ledgerid,
    entryId: m.entryid,
    partition: m.partition,
    batchIndex: m.batchIndex,
  };
}

function propsObject(list) {
  const o = {};
  for (const { key, value } of list || []) o[key] = value;
  return o;
}

// Uncaught errors inside pulsar-flex's socket 'data' handler (e.g. a frame
// whose type it cannot map) surface here; report them instead of a bare trace.
function installCrashHandlers(prog) {
  progName = prog;
  process.on('uncaughtException', (e) => {
    fatal(`uncaught exception: ${e && e.stack ? e.stack : e}`, 1);
  });
  process.on('unhandledRejection', (e) => {
    fatal(`unhandled rejection: ${e && e.stack ? e.stack : e}`, 1);
  });
}

module.exports = {
  parseArgs,
  discoveryServer,
  propsFor,
  fill,
  emit,
  note,
  fatal,
  exitOk,
  armTimeout,
  within,
  flexLogCreator,
  flexLogLevel,
  msgId,
  enumValue,
  enumName,
  propsObject,
  installCrashHandlers,
};
