#!/usr/bin/env node
// smtp_server.js - the npm smtp-server peer for devmail's interop tests and benchmark.
//
// A real, independently written SMTP server with PIPELINING, 8BITMIME, SMTPUTF8,
// ENHANCEDSTATUSCODES, SIZE and AUTH PLAIN/LOGIN/CRAM-MD5, over STARTTLS, implicit TLS
// or plain TCP, listening on loopback only.  Each accepted message is written to the
// capture directory (same format as tests/interop/aiosmtpd_server.py):
//
//   MAIL FROM:<sender>            envelope, one line each
//   RCPT TO:<rcpt>                (one line per recipient)
//   AUTH <user>                   ("AUTH -" when not authenticated)
//   TLS <protocol>                ("TLS -" on a plain connection)
//   SMTPUTF8 <0|1>
//   <empty line>
//   <raw message bytes, CRLF, dot-unstuffed>
//
// The file is written (temp name, then rename to NNNNNN.eml) before the 250 reply
// to the end of DATA is sent, so a client that saw 250 finds the file.
//
// smtp-server waits 100 ms before its greeting (SMTPConnection.init() arms
// `setTimeout(() => this.connectionReady(), 100)` to catch early talkers) and
// resolves the client's address in DNS first.  Both would dominate a loopback
// benchmark, so this script replaces init() with one that calls connectionReady()
// at once (same listeners, same connection-limit check), and sets
// disableReverseLookup.  --greeting-pause keeps the original behaviour.
//
// On startup prints "READY <port>" on stdout; stops on SIGTERM/SIGINT.
'use strict';

const fs = require('fs');
const path = require('path');
const { SMTPServer } = require('smtp-server');
const { SMTPConnection } = require('smtp-server/lib/smtp-connection');

function usage(msg) {
	if (msg) {
		process.stderr.write('smtp_server.js: ' + msg + '\n');
	}
	process.stderr.write(
		'usage: node smtp_server.js [--host H] [--port P] [--tls starttls|implicit|none]\n' +
		'  [--cert F --key F] [--user NAME:PASS]... [--auth-methods PLAIN,LOGIN,CRAM-MD5]\n' +
		'  [--no-auth] [--insecure-auth] [--size BYTES] [--capture DIR]\n' +
		'  [--rcpt-reply ADDR=CODE TEXT]... [--data-reply SENDER=CODE TEXT]...\n' +
		'  [--greeting-pause] [--quiet]\n');
	process.exit(2);
}

const opt = {
	host: '127.0.0.1', port: 0, tls: 'starttls', cert: null, key: null,
	users: new Map(), authMethods: ['PLAIN', 'LOGIN', 'CRAM-MD5'], auth: true,
	insecureAuth: false, size: 0, capture: null, rcptReplies: new Map(),
	dataReplies: new Map(), greetingPause: false, quiet: false,
};

function parseReply(spec, flag) {
	const eq = spec.indexOf('=');
	const m = eq > 0 ? /^([245]\d\d)(?: (.*))?$/.exec(spec.slice(eq + 1)) : null;
	if (!m) {
		usage(flag + ': expected ADDR=CODE TEXT, got ' + JSON.stringify(spec));
	}
	return [spec.slice(0, eq).toLowerCase(), { code: Number(m[1]), text: m[2] || 'Refused by test peer' }];
}

const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
	const a = argv[i];
	const val = () => {
		if (i + 1 >= argv.length) {
			usage(a + ' needs a value');
		}
		return argv[++i];
	};
	switch (a) {
	case '--host': opt.host = val(); break;
	case '--port': opt.port = Number(val()); break;
	case '--tls': opt.tls = val(); break;
	case '--cert': opt.cert = val(); break;
	case '--key': opt.key = val(); break;
	case '--user': {
		const s = val();
		const c = s.indexOf(':');
		if (c <= 0) {
			usage('--user: expected NAME:PASS');
		}
		opt.users.set(s.slice(0, c), s.slice(c + 1));
		break;
	}
	case '--auth-methods': opt.authMethods = val().split(',').map(s => s.trim().toUpperCase()); break;
	case '--no-auth': opt.auth = false; break;
	case '--insecure-auth': opt.insecureAuth = true; break;
	case '--size': opt.size = Number(val()); break;
	case '--capture': opt.capture = val(); break;
	case '--rcpt-reply': { const [k, v] = parseReply(val(), a); opt.rcptReplies.set(k, v); break; }
	case '--data-reply': { const [k, v] = parseReply(val(), a); opt.dataReplies.set(k, v); break; }
	case '--greeting-pause': opt.greetingPause = true; break;
	case '--quiet': opt.quiet = true; break;
	default: usage('unknown option ' + a);
	}
}
if (!['starttls', 'implicit', 'none'].includes(opt.tls)) {
	usage('--tls must be starttls, implicit or none');
}
if (opt.tls !== 'none' && (!opt.cert || !opt.key)) {
	usage('--tls ' + opt.tls + ' needs --cert and --key');
}
if (!/^(127\.|::1$|localhost$)/.test(opt.host)) {
	usage('--host must be a loopback address');
}

if (!opt.greetingPause) {
	// Same as SMTPConnection.prototype.init without the 100 ms early-talker timer.
	SMTPConnection.prototype.init = function initNoPause() {
		this._setListeners(() => {
			if (this._server.options.maxClients &&
			    this._server.connections.size > this._server.options.maxClients) {
				return this.send(421, this.name + ' Too many connected clients, try again in a moment', false);
			}
			this.connectionReady();
		});
	};
}

let seq = 0;
function capture(session, raw) {
	if (!opt.capture) {
		return;
	}
	seq++;
	const env = session.envelope;
	const lines = ['MAIL FROM:<' + (env.mailFrom ? env.mailFrom.address : '') + '>'];
	for (const r of env.rcptTo) {
		lines.push('RCPT TO:<' + r.address + '>');
	}
	lines.push('AUTH ' + (session.user || '-'));
	lines.push('TLS ' + (session.secure && session.tlsOptions ? (session.tlsOptions.version || 'yes') : (session.secure ? 'yes' : '-')));
	lines.push('SMTPUTF8 ' + (env.mailFrom && env.mailFrom.args && env.mailFrom.args.SMTPUTF8 ? 1 : 0));
	const head = Buffer.from(lines.join('\n') + '\n\n', 'utf8');
	const name = String(seq).padStart(6, '0') + '.eml';
	const tmp = path.join(opt.capture, '.' + name + '.tmp');
	fs.writeFileSync(tmp, Buffer.concat([head, raw]));
	fs.renameSync(tmp, path.join(opt.capture, name));
}

const serverOptions = {
	secure: opt.tls === 'implicit',
	hideSTARTTLS: opt.tls !== 'starttls',
	disableReverseLookup: true,
	logger: false,
	banner: 'devmail test peer (smtp-server)',
	size: opt.size || 0,
	hideSize: !opt.size,
	authMethods: opt.auth ? opt.authMethods : [],
	authOptional: !opt.auth,
	allowInsecureAuth: opt.insecureAuth,
	disabledCommands: opt.auth ? [] : ['AUTH'],
	maxClients: 64,
	socketTimeout: 30 * 1000,

	onAuth(auth, session, callback) {
		const pass = opt.users.get(auth.username);
		let ok = false;
		if (pass !== undefined) {
			if (auth.method === 'CRAM-MD5') {
				ok = auth.validatePassword(pass);
			} else {
				ok = auth.password === pass;
			}
		}
		if (!ok) {
			const err = new Error('Authentication credentials invalid');
			err.responseCode = 535;
			return callback(err);
		}
		callback(null, { user: auth.username });
	},

	onRcptTo(address, session, callback) {
		const r = opt.rcptReplies.get(address.address.toLowerCase());
		if (r && r.code >= 400) {
			const err = new Error(r.text);
			err.responseCode = r.code;
			return callback(err);
		}
		callback();
	},

	onData(stream, session, callback) {
		// Without a capture directory (the benchmark) the data is only
		// drained, so the server's memory does not grow with message size.
		const chunks = [];
		stream.on('data', c => {
			if (opt.capture) {
				chunks.push(c);
			}
		});
		stream.on('error', err => callback(err));
		stream.on('end', () => {
			if (stream.sizeExceeded) {
				const err = new Error('Message exceeds fixed maximum message size');
				err.responseCode = 552;
				return callback(err);
			}
			const from = session.envelope.mailFrom ? session.envelope.mailFrom.address.toLowerCase() : '';
			const r = opt.dataReplies.get(from);
			if (r && r.code >= 400) {
				const err = new Error(r.text);
				err.responseCode = r.code;
				return callback(err);
			}
			try {
				capture(session, Buffer.concat(chunks));
			} catch (e) {
				const err = new Error('Capture failed: ' + e.message);
				err.responseCode = 451;
				return callback(err);
			}
			callback(null, 'Message queued as ' + String(seq).padStart(6, '0'));
		});
	},
};
if (opt.tls !== 'none') {
	serverOptions.key = fs.readFileSync(opt.key);
	serverOptions.cert = fs.readFileSync(opt.cert);
}

const server = new SMTPServer(serverOptions);
server.on('error', err => {
	if (!opt.quiet) {
		process.stderr.write('smtp_server.js: ' + err.message + '\n');
	}
});
server.listen(opt.port, opt.host, () => {
	process.stdout.write('READY ' + server.server.address().port + '\n');
});

function stop() {
	server.close(() => process.exit(0));
	setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
