#!/usr/bin/env python3
"""Independent peer for Warden's cosign compatibility tests.

Written against the cosign formats, not against Warden's code, with the `cryptography` package
(ECDSA P-256, Ed25519, PKCS#8), `pynacl` (secretbox) and `hashlib.scrypt`. Driven by
crates/trust/tests/cosign_peer.rs; every command exits non-zero on failure.

  sign-payload --dir D --docker-reference R --digest sha256:... [--algorithm A] [--count N]
      makes a key (D/key.pub), the cosign simple signing payload (D/payload) and N signatures
      over it (D/sig.0 ... base64, as in the cosign annotation)
  verify --pub F --payload F --sig F
      verifies a base64 signature over the exact payload bytes
  write-key --out F --pub-out F --password P [--label L] [--algorithm A]
      writes an encrypted private key file in cosign's format and its public key
  read-key --key F --password P --pub-out F
      decrypts a key file, writes its public key, and checks it signs and verifies
"""

import argparse
import base64
import hashlib
import json
import os
import sys

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    import nacl.secret
except ImportError as e:  # pragma: no cover
    sys.stderr.write(
        f"missing Python package ({e}); install with: pip install cryptography pynacl\n"
    )
    sys.exit(3)

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
COSIGN_TYPE = "cosign container image signature"
LABELS = (
    "ENCRYPTED COSIGN PRIVATE KEY",
    "ENCRYPTED SIGSTORE PRIVATE KEY",
    "ENCRYPTED WARDEN PRIVATE KEY",
)
# go-securesystemslib "legacy" parameters, cosign's default
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1


def new_key(algorithm):
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise SystemExit(f"unknown algorithm {algorithm}")


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign(key, payload):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))  # DER, random k
    return key.sign(payload)  # raw 64 bytes, PureEdDSA


def verify(pub, payload, sig):
    if isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
    else:
        pub.verify(sig, payload)


def cosign_payload(docker_reference, digest):
    # Go's json.Marshal of cosign's payload.SimpleContainerImage: struct field order, compact
    doc = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": COSIGN_TYPE,
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def pem_encode(label, body):
    b64 = base64.b64encode(body).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode()


def pem_decode(text):
    lines = [l.strip() for l in text.decode().strip().splitlines()]
    if not (lines[0].startswith("-----BEGIN ") and lines[-1].startswith("-----END ")):
        raise SystemExit("not a PEM file")
    label = lines[0][len("-----BEGIN ") : -len("-----")]
    return label, base64.b64decode("".join(lines[1:-1]), validate=True)


def scrypt_key(password, salt, n, r, p):
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * 1024 * 1024)


def cmd_sign_payload(a):
    key = new_key(a.algorithm)
    payload = cosign_payload(a.docker_reference, a.digest)
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "key.pub"), "wb") as f:
        f.write(public_pem(key))
    with open(os.path.join(a.dir, "payload"), "wb") as f:
        f.write(payload)
    high_s = 0
    for i in range(a.count):
        sig = sign(key, payload)
        if a.algorithm == "ecdsa-p256":
            _, s = decode_dss_signature(sig)
            high_s += s > P256_ORDER // 2
        with open(os.path.join(a.dir, f"sig.{i}"), "wb") as f:
            f.write(base64.b64encode(sig))
    print(json.dumps({"high_s": high_s, "count": a.count}))


def cmd_verify(a):
    pub = serialization.load_pem_public_key(open(a.pub, "rb").read())
    payload = open(a.payload, "rb").read()
    sig = base64.b64decode(open(a.sig, "rb").read().strip(), validate=True)
    try:
        verify(pub, payload, sig)
    except InvalidSignature:
        raise SystemExit("signature does not verify")
    if a.expect_docker_reference:
        want = cosign_payload(a.expect_docker_reference, a.expect_digest)
        if payload != want:
            raise SystemExit(f"payload differs from cosign's:\n{payload!r}\n{want!r}")
    print("verified")


def cmd_write_key(a):
    key = new_key(a.algorithm)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt = os.urandom(32)
    nonce = os.urandom(24)
    box = nacl.secret.SecretBox(scrypt_key(a.password.encode(), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    ciphertext = box.encrypt(der, nonce).ciphertext  # tag || encrypted, as Go's secretbox.Seal
    envelope = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    with open(a.out, "wb") as f:
        f.write(pem_encode(a.label, json.dumps(envelope, separators=(",", ":")).encode()))
    with open(a.pub_out, "wb") as f:
        f.write(public_pem(key))


def cmd_read_key(a):
    label, body = pem_decode(open(a.key, "rb").read())
    if label not in LABELS:
        raise SystemExit(f"unexpected label {label}")
    env = json.loads(body)
    if env["kdf"]["name"] != "scrypt" or env["cipher"]["name"] != "nacl/secretbox":
        raise SystemExit("unexpected kdf or cipher")
    params = env["kdf"]["params"]
    if (params["N"], params["r"], params["p"]) != (SCRYPT_N, SCRYPT_R, SCRYPT_P):
        raise SystemExit(f"scrypt parameters {params} are not cosign's default")
    salt = base64.b64decode(env["kdf"]["salt"], validate=True)
    nonce = base64.b64decode(env["cipher"]["nonce"], validate=True)
    ciphertext = base64.b64decode(env["ciphertext"], validate=True)
    box = nacl.secret.SecretBox(scrypt_key(a.password.encode(), salt, params["N"], params["r"], params["p"]))
    der = box.decrypt(ciphertext, nonce)
    key = serialization.load_der_private_key(der, password=None)
    sig = sign(key, b"peer check")
    verify(key.public_key(), b"peer check", sig)
    with open(a.pub_out, "wb") as f:
        f.write(public_pem(key))
    print(label)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sign-payload")
    s.add_argument("--dir", required=True)
    s.add_argument("--docker-reference", required=True)
    s.add_argument("--digest", required=True)
    s.add_argument("--algorithm", default="ecdsa-p256")
    s.add_argument("--count", type=int, default=1)
    s.set_defaults(func=cmd_sign_payload)
    v = sub.add_parser("verify")
    v.add_argument("--pub", required=True)
    v.add_argument("--payload", required=True)
    v.add_argument("--sig", required=True)
    v.add_argument("--expect-docker-reference")
    v.add_argument("--expect-digest")
    v.set_defaults(func=cmd_verify)
    w = sub.add_parser("write-key")
    w.add_argument("--out", required=True)
    w.add_argument("--pub-out", required=True)
    w.add_argument("--password", required=True)
    w.add_argument("--label", default="ENCRYPTED COSIGN PRIVATE KEY")
    w.add_argument("--algorithm", default="ecdsa-p256")
    w.set_defaults(func=cmd_write_key)
    r = sub.add_parser("read-key")
    r.add_argument("--key", required=True)
    r.add_argument("--password", required=True)
    r.add_argument("--pub-out", required=True)
    r.set_defaults(func=cmd_read_key)
    a = ap.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
