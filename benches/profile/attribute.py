#!/usr/bin/env python3
"""Attribute perf samples of the idmint server to its components.

usage: perf script -i FILE -F comm,ip,sym,dso | benches/profile/attribute.py

Input: `perf record --call-graph dwarf` samples (see record.sh). Each stack
is walked from the leaf to the root; the first frame whose *function path*
(not its generic parameters, which mention every type under the sun) belongs
to a component decides. Specific components (JWT verification, Cedar, audit,
SQLite, signing...) are looked for first, so that e.g. a malloc inside Cedar
counts as Cedar; only stacks with none of them fall back to HTTP (hyper,
axum, tower), the tokio runtime, or a kernel bucket. Every sample of the
audit writer and SQLite writer threads counts to audit and store, kernel
time (write, fsync) included.

Output: share of the server's on-CPU samples per component. Multiply by the
bench's CPU-s/1k to get microseconds per request."""
import sys, re, collections
RULES = [
 ("JWT signature verify (ring)", r"ring::ec::suite_b::ecdsa::verification|ring::rsa::verification|ring::ec::curve25519::ed25519::verification|ring::signature::UnparsedPublicKey|ring::rsa::public_key|idmint_authn::jwk::VerificationKey::verify"),
 ("idmint token signing (issuer)", r"ring::ec::suite_b::ecdsa::signing|ring::rsa::keypair|ring::ec::curve25519::ed25519::signing|idmint_issuers"),
 ("session sealing (AES-GCM)", r"idmint_core::session|ring::aead"),
 ("Cedar policy evaluation", r"cedar_policy|idmint_core::policy"),
 ("audit (build/serialize/hash/write/fsync)", r"idmint_audit|idmint_server::audit_events"),
 ("store (SQLite)", r"idmint_store|rusqlite|sqlite3"),
 ("JWT parse + claims (authn)", r"idmint_authn"),
 ("request id / randomness", r"idmint_core::ids|ring::rand|getrandom"),
 ("handlers (login/oauth/issuance)", r"idmint_server::routes::(login|oauth)|idmint_server::issuance|idmint_server::session_auth|idmint_server::metrics|idmint_core::(identity|role)"),
 ("HTTP (hyper/axum/tower)", r"hyper::|hyper_util::|axum::|axum_core::|tower::|tower_http::|http::|idmint_server::routes::request_id_layer|idmint_server::app"),
 ("tokio runtime", r"tokio::|mio::"),
]
RULES = [(n, re.compile(r"^<?(?:" + p + r")")) for n, p in RULES]
THREAD_RULES = [("audit (build/serialize/hash/write/fsync)", re.compile(r"audit")), ("store (SQLite)", re.compile(r"sqlite|store"))]
counts = collections.Counter(); total = 0
kernel_net = re.compile(r"tcp_|sock_|ip_|net_|skb|inet|sendto|recvfrom|sendmsg|recvmsg|epoll|ep_poll|loopback")
def sym_of(line):
    s = line.strip().split(None, 1)
    return s[1] if len(s) == 2 else ""
def classify(comm, frames):
    for name, rx in THREAD_RULES:
        if rx.search(comm):
            return name
    generic = ("HTTP (hyper/axum/tower)", "tokio runtime")
    for _, sym in frames:
        for name, rx in RULES:
            if name not in generic and rx.search(sym):
                return name
    leaf_kernel = frames[0][0]
    syms = " ".join(s for _, s in frames)
    if leaf_kernel:
        if kernel_net.search(syms): return "kernel: network (loopback TCP)"
        if re.search(r"futex|schedule|switch|wake", syms): return "kernel: scheduling/futex"
        return "kernel: other"
    for _, sym in frames:
        for name, rx in RULES:
            if rx.search(sym):
                return name
    if re.search(r"malloc|free|realloc|calloc", frames[0][1]): return "malloc/free (unattributed)"
    return "unattributed (truncated stack)"
comm=None; frames=[]
def flush():
    global total, frames
    if frames:
        total += 1
        counts[classify(comm, frames)] += 1
    frames = []
for line in sys.stdin:
    if not line.strip():
        flush(); continue
    if not line.startswith((' ', '\t')):
        flush(); comm = line.split()[0] if line.split() else ""; continue
    sym = sym_of(line)
    frames.append(("kernel.kallsyms" in sym, sym))
flush()
for k, v in counts.most_common():
    print(f"{100*v/total:6.1f}%  {k}")
print(f"{total} samples")
