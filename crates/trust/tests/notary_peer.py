#!/usr/bin/env python3
"""An independent Notary Project signer (notary.x509 scheme, JWS envelope), written from the
specification (signature-specification.md, signature-envelope-jws.md) with `cryptography`.

Usage: notary_peer.py OUT_DIR [MEDIA_TYPE DIGEST SIZE]. Writes OUT_DIR/cases.json: a list of cases, each with a name,
the envelope (text), the target descriptor it is checked against and the trust store PEM.
Hostile cases are made here too, by the signer, so the Rust verifier is judged on bytes it did
not make. The target defaults to a made-up manifest; the registry and node tests name the
manifest they pushed.
"""
import base64
import datetime
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "ab" * 32
SIZE = 1234


def name(**attrs):
    oid = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "C": NameOID.COUNTRY_NAME}
    return x509.Name([x509.NameAttribute(oid[k], v) for k, v in attrs.items()])


def cert(subject, key, issuer_name, issuer_key, ca, ku=None, eku=None, not_before=None,
         not_after=None, path_len=None, bc=True):
    b = (x509.CertificateBuilder()
         .subject_name(subject).issuer_name(issuer_name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before or NOW - DAY)
         .not_valid_after(not_after or NOW + 30 * DAY))
    if bc:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
    if ku is None:
        ku = {"key_cert_sign": True, "crl_sign": True} if ca else {"digital_signature": True}
    flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                 data_encipherment=False, key_agreement=False, key_cert_sign=False,
                 crl_sign=False, encipher_only=False, decipher_only=False)
    flags.update(ku)
    b = b.add_extension(x509.KeyUsage(**flags), critical=True)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    h = hashes.SHA384() if isinstance(issuer_key, ec.EllipticCurvePrivateKey) and \
        isinstance(issuer_key.curve, ec.SECP384R1) else hashes.SHA256()
    return b.sign(issuer_key, h)


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_b64(c):
    return base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()


def pem(*certs):
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def sign(key, alg, data):
    if alg.startswith("ES"):
        h = {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}[alg]
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(h)))
        n = (key.curve.key_size + 7) // 8
        return r.to_bytes(n, "big") + s.to_bytes(n, "big")
    h = {"PS256": hashes.SHA256(), "PS384": hashes.SHA384(), "PS512": hashes.SHA512()}[alg]
    return key.sign(data, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)


def envelope(key, chain, alg, target=None, protected=None, sign_alg=None, tamper_payload=False):
    target = target or {"mediaType": MANIFEST, "digest": DIGEST, "size": SIZE}
    header = protected or {
        "alg": alg,
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "crit": ["io.cncf.notary.signingScheme"],
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    p = b64u(json.dumps(header).encode())
    payload = b64u(json.dumps({"targetArtifact": target}).encode())
    sig = sign(key, sign_alg or alg, (p + "." + payload).encode())
    if tamper_payload:
        payload = b64u(json.dumps({"targetArtifact": dict(target, size=SIZE + 1)}).encode())
    return json.dumps({
        "payload": payload,
        "protected": p,
        "header": {"x5c": [der_b64(c) for c in chain], "io.cncf.notary.signingAgent": "peer/1"},
        "signature": b64u(sig),
    })


def main(out):
    root_key = ec.generate_private_key(ec.SECP384R1())
    root_name = name(CN="Warden Test Root", O="Hospital A", C="NL")
    root = cert(root_name, root_key, root_name, root_key, ca=True)
    int_key = ec.generate_private_key(ec.SECP256R1())
    int_name = name(CN="Warden Test Intermediate", O="Hospital A", C="NL")
    inter = cert(int_name, int_key, root_name, root_key, ca=True, path_len=0)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_name = name(C="NL", O="Hospital A", CN="Reviewers")
    leaf = cert(leaf_name, leaf_key, int_name, int_key, ca=False,
                eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    chain = [leaf, inter, root]
    cases = []

    def case(n, env, store=None, target=None):
        cases.append({"name": n, "envelope": env, "trust_store": store or pem(root),
                      "target": target or {"mediaType": MANIFEST, "digest": DIGEST, "size": SIZE}})

    case("es256-three", envelope(leaf_key, chain, "ES256"))
    # Two certificates, RSA: a root signing an RSA 2048 leaf that signs PS256.
    rroot_key = rsa.generate_private_key(65537, 3072)
    rroot_name = name(CN="Warden RSA Root", O="Hospital B")
    rroot = cert(rroot_name, rroot_key, rroot_name, rroot_key, ca=True)
    rleaf_key = rsa.generate_private_key(65537, 2048)
    rleaf = cert(name(CN="Reviewers", O="Hospital B"), rleaf_key, rroot_name, rroot_key, ca=False)
    case("ps256-two", envelope(rleaf_key, [rleaf, rroot], "PS256"), store=pem(rroot))
    # Two certificates, ECDSA (the benchmark's chain).
    eleaf = cert(name(CN="Reviewers", O="Hospital A"), leaf_key, root_name, root_key, ca=False)
    case("es256-two", envelope(leaf_key, [eleaf, root], "ES256"))
    # Two certificates, all P-256 (the benchmark's target chain).
    p256_root_key = ec.generate_private_key(ec.SECP256R1())
    p256_root_name = name(CN="Warden P-256 Root", O="Hospital A")
    p256_root = cert(p256_root_name, p256_root_key, p256_root_name, p256_root_key, ca=True)
    p256_leaf = cert(name(CN="Reviewers", O="Hospital A"), leaf_key, p256_root_name,
                     p256_root_key, ca=False)
    case("es256-two-p256", envelope(leaf_key, [p256_leaf, p256_root], "ES256"),
         store=pem(p256_root))

    # Hostile.
    other_int_key = ec.generate_private_key(ec.SECP256R1())
    other_inter = cert(int_name, other_int_key, root_name, root_key, ca=True)
    case("tampered-chain", envelope(leaf_key, [leaf, other_inter, root], "ES256"))
    expired = cert(leaf_name, leaf_key, int_name, int_key, ca=False,
                   not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    case("expired-leaf", envelope(leaf_key, [expired, inter, root], "ES256"))
    wrong_ku = cert(leaf_name, leaf_key, int_name, int_key, ca=False,
                    ku={"key_encipherment": True})
    case("wrong-key-usage", envelope(leaf_key, [wrong_ku, inter, root], "ES256"))
    server_eku = cert(leaf_name, leaf_key, int_name, int_key, ca=False,
                      eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    case("server-auth-eku", envelope(leaf_key, [server_eku, inter, root], "ES256"))
    not_ca = cert(int_name, int_key, root_name, root_key, ca=False,
                  ku={"key_cert_sign": True})
    case("intermediate-not-ca", envelope(leaf_key, [leaf, not_ca, root], "ES256"))
    leaf_ca = cert(leaf_name, leaf_key, int_name, int_key, ca=True,
                   ku={"digital_signature": True})
    case("leaf-is-ca", envelope(leaf_key, [leaf_ca, inter, root], "ES256"))
    case("untrusted-root", envelope(leaf_key, chain, "ES256"), store=pem(rroot))
    case("other-digest", envelope(leaf_key, chain, "ES256",
                                  target={"mediaType": MANIFEST, "digest": "sha256:" + "cd" * 32,
                                          "size": SIZE}))
    case("other-size", envelope(leaf_key, chain, "ES256",
                                target={"mediaType": MANIFEST, "digest": DIGEST, "size": SIZE + 1}))
    case("other-media-type", envelope(leaf_key, chain, "ES256", target={
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": DIGEST, "size": SIZE}))
    case("tampered-payload", envelope(leaf_key, chain, "ES256", tamper_payload=True))
    base = {"cty": "application/vnd.cncf.notary.payload.v1+json",
            "crit": ["io.cncf.notary.signingScheme"],
            "io.cncf.notary.signingScheme": "notary.x509",
            "io.cncf.notary.signingTime": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}
    case("alg-none", envelope(leaf_key, chain, "ES256", protected=dict(base, alg="none"),
                              sign_alg="ES256"))
    case("alg-unknown", envelope(leaf_key, chain, "ES256", protected=dict(base, alg="ES256K"),
                                 sign_alg="ES256"))
    case("alg-mismatch", envelope(leaf_key, chain, "ES256", protected=dict(base, alg="ES384"),
                                  sign_alg="ES256"))
    case("crit-unknown", envelope(leaf_key, chain, "ES256", protected=dict(
        base, alg="ES256", crit=["io.cncf.notary.signingScheme", "io.example.mustUnderstand"],
        **{"io.example.mustUnderstand": "yes"})))
    case("expired-signature", envelope(leaf_key, chain, "ES256", protected=dict(
        base, alg="ES256", crit=["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"],
        **{"io.cncf.notary.expiry": (NOW - DAY).strftime("%Y-%m-%dT%H:%M:%SZ")})))
    with open(f"{out}/cases.json", "w") as f:
        json.dump(cases, f)


if __name__ == "__main__":
    if len(sys.argv) == 5:
        # notary_peer.py OUT_DIR MEDIA_TYPE DIGEST SIZE: sign that manifest instead.
        MANIFEST, DIGEST, SIZE = sys.argv[2], sys.argv[3], int(sys.argv[4])
    main(sys.argv[1])
