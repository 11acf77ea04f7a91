#!/usr/bin/env python3
"""An independent peer for Warden's sealing (crates/seal): RFC 9180 HPKE base and auth modes
with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305, written from the RFC with
Python's `cryptography` primitives (X25519, HMAC-SHA256, HKDF-Expand, ChaCha20Poly1305) and
nothing of Warden's.

Sealed format version 1: 0x01 || enc (32 bytes) || ChaCha20-Poly1305 ciphertext with tag.
The context is the HPKE info; the associated data is empty.

Sealed format version 2 (docs/encryption.md): header = 0x02 || kind (1 input, 2 result,
3 logs) || sender kind (1 researcher certificate, 2 organization key) || u16 BE length ||
sender; then enc (32) || ciphertext. HPKE auth mode with the sender's static key, info
"warden/sealed/v2" || the header, empty AAD. Plaintext = body || binding JSON || u32 BE binding length.

Commands:
  selftest                                       check the RFC 9180 A.2.1 and A.2.3 vectors
  genkey --out KEY.pem                           write a Warden private key; print the public key (base64)
  seal --pub B64 --context HEX --in F --out G    seal F to the public key (version 1)
  open --key KEY.pem --context HEX --in F --out G  open F with the private key (version 1)
  seal-result --key KEY.pem --to B64 --kind result|logs --binding J --in F --out G
                                                 seal F as the organization of KEY.pem (version 2)
  open-v2 --key KEY.pem [--from B64] --in F --out G --binding-out J
                                                 open a version 2 message; with --from, the
                                                 sender must be that organization key; prints
                                                 the kind and the sender key (base64)

Exit status: 0 success, 1 refused (e.g. the message does not open), 2 usage, 3 missing packages
(`pip install cryptography`).
"""

import argparse
import base64
import json
import os
import sys

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes, hmac, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
except ImportError as e:  # pragma: no cover
    print(f"missing Python package: {e}; run `pip install cryptography`", file=sys.stderr)
    sys.exit(3)

KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0003
KEM_SUITE = b"KEM" + KEM_ID.to_bytes(2, "big")
HPKE_SUITE = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
MODE_BASE = 0
MODE_AUTH = 2
VERSION = 1
VERSION_2 = 2
INFO_V2 = b"warden/sealed/v2"
KINDS = {"input": 1, "result": 2, "logs": 3}
LABEL = "WARDEN X25519 PRIVATE KEY"


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    h = hmac.HMAC(salt if salt else b"\x00" * 32, hashes.SHA256())
    h.update(ikm)
    return h.finalize()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hkdf_extract(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return hkdf_expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


def raw_public(pk: X25519PublicKey) -> bytes:
    return pk.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def raw_private(sk: X25519PrivateKey) -> bytes:
    return sk.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def derive_keypair(ikm: bytes) -> X25519PrivateKey:
    """RFC 9180 7.1.3 DeriveKeyPair for X25519."""
    dkp_prk = labeled_extract(KEM_SUITE, b"", b"dkp_prk", ikm)
    sk = labeled_expand(KEM_SUITE, dkp_prk, b"sk", b"", 32)
    return X25519PrivateKey.from_private_bytes(sk)


def extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    eae_prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    return labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", kem_context, 32)


def encap(pk_r: X25519PublicKey, sk_e: X25519PrivateKey):
    dh = sk_e.exchange(pk_r)
    enc = raw_public(sk_e.public_key())
    shared = extract_and_expand(dh, enc + raw_public(pk_r))
    return shared, enc


def decap(enc: bytes, sk_r: X25519PrivateKey) -> bytes:
    pk_e = X25519PublicKey.from_public_bytes(enc)
    dh = sk_r.exchange(pk_e)  # raises on an all-zero result
    return extract_and_expand(dh, enc + raw_public(sk_r.public_key()))


def auth_encap(pk_r: X25519PublicKey, sk_s: X25519PrivateKey, sk_e: X25519PrivateKey):
    """RFC 9180 4.1 AuthEncap."""
    dh = sk_e.exchange(pk_r) + sk_s.exchange(pk_r)
    enc = raw_public(sk_e.public_key())
    kem_context = enc + raw_public(pk_r) + raw_public(sk_s.public_key())
    return extract_and_expand(dh, kem_context), enc


def auth_decap(enc: bytes, sk_r: X25519PrivateKey, pk_s: X25519PublicKey) -> bytes:
    """RFC 9180 4.1 AuthDecap."""
    pk_e = X25519PublicKey.from_public_bytes(enc)
    dh = sk_r.exchange(pk_e) + sk_r.exchange(pk_s)
    kem_context = enc + raw_public(sk_r.public_key()) + raw_public(pk_s)
    return extract_and_expand(dh, kem_context)


def key_schedule(shared: bytes, info: bytes, mode: int = MODE_BASE):
    psk_id_hash = labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    ctx = bytes([mode]) + psk_id_hash + info_hash
    secret = labeled_extract(HPKE_SUITE, shared, b"secret", b"")
    key = labeled_expand(HPKE_SUITE, secret, b"key", ctx, 32)
    base_nonce = labeled_expand(HPKE_SUITE, secret, b"base_nonce", ctx, 12)
    return key, base_nonce


def seal(pk_r: X25519PublicKey, info: bytes, pt: bytes, sk_e=None) -> bytes:
    sk_e = sk_e or X25519PrivateKey.generate()
    shared, enc = encap(pk_r, sk_e)
    key, nonce = key_schedule(shared, info)
    return bytes([VERSION]) + enc + ChaCha20Poly1305(key).encrypt(nonce, pt, b"")


def open_sealed(sk_r: X25519PrivateKey, info: bytes, sealed: bytes) -> bytes:
    if len(sealed) < 1 + 32 + 16:
        raise ValueError("sealed message is truncated")
    if sealed[0] != VERSION:
        raise ValueError(f"unknown version {sealed[0]}")
    enc, ct = sealed[1:33], sealed[33:]
    key, nonce = key_schedule(decap(enc, sk_r), info)
    return ChaCha20Poly1305(key).decrypt(nonce, ct, b"")


def seal_v2(kind: int, sk_s: X25519PrivateKey, pk_r: X25519PublicKey, binding: bytes, body: bytes) -> bytes:
    """A version 2 message from an organization key (sender kind 2)."""
    sender = raw_public(sk_s.public_key())
    header = bytes([VERSION_2, kind, 2]) + len(sender).to_bytes(2, "big") + sender
    shared, enc = auth_encap(pk_r, sk_s, X25519PrivateKey.generate())
    key, nonce = key_schedule(shared, INFO_V2 + header, MODE_AUTH)
    plaintext = body + binding + len(binding).to_bytes(4, "big")
    return header + enc + ChaCha20Poly1305(key).encrypt(nonce, plaintext, b"")


def open_v2(sk_r: X25519PrivateKey, sealed: bytes):
    """Returns (kind, sender key bytes, binding bytes, body)."""
    if len(sealed) < 5 or sealed[0] != VERSION_2:
        raise ValueError("not a version 2 message")
    kind, sender_kind = sealed[1], sealed[2]
    length = int.from_bytes(sealed[3:5], "big")
    header, rest = sealed[: 5 + length], sealed[5 + length :]
    sender = header[5:]
    if sender_kind == 2:
        pk_s = sender
    elif sender_kind == 1:
        # A researcher certificate: the key is in its statement (checked by the caller).
        statement = json.loads(base64.b64decode(json.loads(sender)["statement"]))
        pk_s = base64.b64decode(statement["key"], validate=True)
    else:
        raise ValueError(f"unknown sender kind {sender_kind}")
    if len(pk_s) != 32 or len(rest) < 32 + 16:
        raise ValueError("truncated")
    enc, ct = rest[:32], rest[32:]
    shared = auth_decap(enc, sk_r, X25519PublicKey.from_public_bytes(pk_s))
    key, nonce = key_schedule(shared, INFO_V2 + header, MODE_AUTH)
    plaintext = ChaCha20Poly1305(key).decrypt(nonce, ct, b"")
    n = int.from_bytes(plaintext[-4:], "big")
    if len(plaintext) < 4 + n:
        raise ValueError("binding length beyond the plaintext")
    end = len(plaintext) - 4
    return kind, pk_s, plaintext[end - n : end], plaintext[: end - n]


def read_key(path: str) -> X25519PrivateKey:
    text = open(path, encoding="ascii").read()
    if f"-----BEGIN {LABEL}-----" not in text:
        raise ValueError(f"not a `{LABEL}` PEM file")
    # The content is RFC 8410 PKCS#8: relabel and let `cryptography` parse it.
    pkcs8 = text.replace(LABEL, "PRIVATE KEY").encode()
    sk = serialization.load_pem_private_key(pkcs8, password=None)
    if not isinstance(sk, X25519PrivateKey):
        raise ValueError("the key is not X25519")
    return sk


def write_key(path: str, sk: X25519PrivateKey) -> None:
    pem = sk.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with open(path, "w", encoding="ascii") as f:
        f.write(pem.replace("PRIVATE KEY", LABEL))


def selftest() -> None:
    """RFC 9180 appendix A.2.1 (base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    ChaCha20Poly1305), sequence number 0."""
    h = bytes.fromhex
    info = h("4f6465206f6e2061204772656369616e2055726e")
    sk_e = derive_keypair(h("909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b"))
    sk_r = derive_keypair(h("1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df"))
    assert raw_private(sk_e) == h("f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600")
    assert raw_private(sk_r) == h("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb")
    assert raw_public(sk_r.public_key()) == h("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a")
    shared, enc = encap(sk_r.public_key(), sk_e)
    assert enc == h("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a")
    assert shared == h("0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7")
    key, nonce = key_schedule(shared, info)
    assert key == h("ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91")
    assert nonce == h("5c4d98150661b848853b547f")
    pt = h("4265617574792069732074727574682c20747275746820626561757479")
    ct = ChaCha20Poly1305(key).encrypt(nonce, pt, h("436f756e742d30"))
    assert ct == h("1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28")
    assert decap(enc, sk_r) == shared

    # RFC 9180 appendix A.2.3 (auth mode, same suite), sequence number 0.
    sk_e = derive_keypair(h("938d3daa5a8904540bc24f48ae90eed3f4f7f11839560597b55e7c9598c996c0"))
    sk_r = derive_keypair(h("64835d5ee64aa7aad57c6f2e4f758f7696617f8829e70bc9ac7a5ef95d1c756c"))
    sk_s = derive_keypair(h("9d8f94537d5a3ddef71234c0baedfad4ca6861634d0b94c3007fed557ad17df6"))
    assert raw_private(sk_r) == h("3ca22a6d1cda1bb9480949ec5329d3bf0b080ca4c45879c95eddb55c70b80b82")
    assert raw_private(sk_s) == h("2def0cb58ffcf83d1062dd085c8aceca7f4c0c3fd05912d847b61f3e54121f05")
    shared, enc = auth_encap(sk_r.public_key(), sk_s, sk_e)
    assert enc == h("f7674cc8cd7baa5872d1f33dbaffe3314239f6197ddf5ded1746760bfc847e0e")
    assert shared == h("d2d67828c8bc9fa661cf15a31b3ebf1febe0cafef7abfaaca580aaf6d471e3eb")
    key, nonce = key_schedule(shared, info, MODE_AUTH)
    assert key == h("b071fd1136680600eb447a845a967d35e9db20749cdf9ce098bcc4deef4b1356")
    assert nonce == h("d20577dff16d7cea2c4bf780")
    ct = ChaCha20Poly1305(key).encrypt(nonce, pt, h("436f756e742d30"))
    assert ct == h("ab1a13c9d4f01a87ec3440dbd756e2677bd2ecf9df0ce7ed73869b98e00c09be111cb9fdf077347aeb88e61bdf")
    assert auth_decap(enc, sk_r, sk_s.public_key()) == shared
    print("ok")


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("selftest")
    g = sub.add_parser("genkey")
    g.add_argument("--out", required=True)
    s = sub.add_parser("seal")
    s.add_argument("--pub", required=True)
    s.add_argument("--context", required=True)
    s.add_argument("--in", dest="inp", required=True)
    s.add_argument("--out", required=True)
    o = sub.add_parser("open")
    o.add_argument("--key", required=True)
    o.add_argument("--context", required=True)
    o.add_argument("--in", dest="inp", required=True)
    o.add_argument("--out", required=True)
    sr = sub.add_parser("seal-result")
    sr.add_argument("--key", required=True)
    sr.add_argument("--to", required=True)
    sr.add_argument("--kind", choices=["result", "logs"], required=True)
    sr.add_argument("--binding", required=True)
    sr.add_argument("--in", dest="inp", required=True)
    sr.add_argument("--out", required=True)
    o2 = sub.add_parser("open-v2")
    o2.add_argument("--key", required=True)
    o2.add_argument("--from", dest="sender")
    o2.add_argument("--in", dest="inp", required=True)
    o2.add_argument("--out", required=True)
    o2.add_argument("--binding-out", required=True)
    a = p.parse_args()

    if a.cmd == "selftest":
        selftest()
    elif a.cmd == "genkey":
        sk = X25519PrivateKey.generate()
        write_key(a.out, sk)
        print(base64.b64encode(raw_public(sk.public_key())).decode())
    elif a.cmd == "seal":
        pk = X25519PublicKey.from_public_bytes(base64.b64decode(a.pub, validate=True))
        data = open(a.inp, "rb").read()
        open(a.out, "wb").write(seal(pk, bytes.fromhex(a.context), data))
    elif a.cmd == "open":
        sk = read_key(a.key)
        try:
            pt = open_sealed(sk, bytes.fromhex(a.context), open(a.inp, "rb").read())
        except (InvalidTag, ValueError) as e:
            print(f"refused: {e!r}", file=sys.stderr)
            return 1
        open(a.out, "wb").write(pt)
    elif a.cmd == "seal-result":
        sk = read_key(a.key)
        pk = X25519PublicKey.from_public_bytes(base64.b64decode(a.to, validate=True))
        binding = open(a.binding, "rb").read()
        body = open(a.inp, "rb").read()
        open(a.out, "wb").write(seal_v2(KINDS[a.kind], sk, pk, binding, body))
    elif a.cmd == "open-v2":
        sk = read_key(a.key)
        try:
            kind, sender, binding, body = open_v2(sk, open(a.inp, "rb").read())
        except (InvalidTag, ValueError, KeyError) as e:
            print(f"refused: {e!r}", file=sys.stderr)
            return 1
        if a.sender is not None and base64.b64decode(a.sender, validate=True) != sender:
            print("refused: sealed by another key", file=sys.stderr)
            return 1
        open(a.out, "wb").write(body)
        open(a.binding_out, "wb").write(binding)
        names = {v: k for k, v in KINDS.items()}
        print(names.get(kind, str(kind)), base64.b64encode(sender).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
