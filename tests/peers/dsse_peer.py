#!/usr/bin/env python3
"""Independent peer for Warden's review attestations (DSSE envelopes of in-toto statements).

Written against the DSSE and in-toto specifications and docs/store.md ("Review attestation"),
not against Warden's code, with `securesystemslib` (its DSSE `Envelope`, `CryptoSigner`,
`SSlibKey`) and `cryptography`. Driven by crates/trust/tests/dsse_peer.rs; every command exits
non-zero on failure (3: a package is missing).

  pae
      reads JSON lines {"type": str, "payload": base64} on stdin and writes one line per input:
      the base64 of securesystemslib's DSSE pre-authentication encoding
  sign --dir D --fields F [--algorithm ed25519|ecdsa-p256]
      makes a key (D/key.pub, PEM), builds the review statement from the JSON fields in F
      (repository, digest hex, and the predicate's fields) and writes the signed envelope to
      D/envelope.json, keyid = sha256:<hex of the key's DER SubjectPublicKeyInfo>
  verify --pub F --envelope F
      verifies the envelope's signature under the key, checks the payload type, the statement
      type and the predicate type, and prints the statement as JSON
"""

import argparse
import base64
import hashlib
import json
import os
import sys

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner, SSlibKey
except ImportError as e:  # pragma: no cover
    sys.stderr.write(
        f"missing Python package ({e}); install with: pip install 'securesystemslib[crypto]'\n"
    )
    sys.exit(3)

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT = "https://in-toto.io/Statement/v1"
PREDICATE = "https://warden.dev/review/v1"


def key_id(public_key):
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def cmd_pae(_args):
    for line in sys.stdin:
        if not line.strip():
            continue
        item = json.loads(line)
        env = Envelope(base64.b64decode(item["payload"]), item["type"], {})
        print(base64.b64encode(env.pae()).decode())


def cmd_sign(args):
    fields = json.load(open(args.fields))
    if args.algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key()
    kid = key_id(public)
    signer = CryptoSigner(private, SSlibKey.from_crypto(public, keyid=kid))
    predicate = {
        k: fields[k]
        for k in (
            "store",
            "algorithm",
            "version",
            "decision",
            "reviewer",
            "organization",
            "sourceRepository",
            "sourceCommit",
            "functions",
            "time",
        )
    }
    if fields.get("comment") is not None:
        predicate["comment"] = fields["comment"]
    statement = {
        "_type": STATEMENT,
        "subject": [{"name": fields["repository"], "digest": {"sha256": fields["digest"]}}],
        "predicateType": PREDICATE,
        "predicate": predicate,
    }
    # Python's default separators (", " and ": "), not Warden's compact form: the signature
    # covers whatever bytes the signer chose.
    payload = json.dumps(statement, indent=1).encode()
    env = Envelope(payload, PAYLOAD_TYPE, {})
    env.sign(signer)
    with open(os.path.join(args.dir, "key.pub"), "wb") as f:
        f.write(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    with open(os.path.join(args.dir, "envelope.json"), "w") as f:
        json.dump(env.to_dict(), f)
    print(kid)


def cmd_verify(args):
    public = serialization.load_pem_public_key(open(args.pub, "rb").read())
    key = SSlibKey.from_crypto(public, keyid=key_id(public))
    data = json.load(open(args.envelope))
    env = Envelope.from_dict(data)
    try:
        env.verify([key], 1)
    except Exception as e:  # securesystemslib raises VerificationError
        sys.stderr.write(f"does not verify: {e}\n")
        sys.exit(1)
    if env.payload_type != PAYLOAD_TYPE:
        sys.stderr.write(f"payload type {env.payload_type!r}\n")
        sys.exit(1)
    statement = json.loads(env.payload)
    if statement.get("_type") != STATEMENT or statement.get("predicateType") != PREDICATE:
        sys.stderr.write("not a Warden review statement\n")
        sys.exit(1)
    print(json.dumps(statement))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pae")
    s = sub.add_parser("sign")
    s.add_argument("--dir", required=True)
    s.add_argument("--fields", required=True)
    s.add_argument("--algorithm", default="ed25519", choices=["ed25519", "ecdsa-p256"])
    v = sub.add_parser("verify")
    v.add_argument("--pub", required=True)
    v.add_argument("--envelope", required=True)
    args = p.parse_args()
    {"pae": cmd_pae, "sign": cmd_sign, "verify": cmd_verify}[args.cmd](args)


if __name__ == "__main__":
    main()
