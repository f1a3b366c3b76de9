"""The RFC 6962 tree against the reference vectors of transparency-dev/merkle (the Go
implementation behind Trillian and the C2SP logs): the leaf inputs, the roots of the trees of
sizes 0..8, and its inclusion and consistency proofs (leaf numbers there are 1-based)."""

from __future__ import annotations

import random

import pytest

from failover.evidence import merkle
from failover.evidence.merkle import ProofError

pytestmark = pytest.mark.unit


def h(s: str) -> bytes:
    return bytes.fromhex(s)


LEAF_INPUTS = [h(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                              "606162636465666768696a6b6c6d6e6f")]
ROOTS = [merkle.EMPTY_ROOT] + [h(x) for x in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
INCLUSION = [  # (1-based leaf, tree size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
LEAVES = [merkle.leaf_hash(x) for x in LEAF_INPUTS]


def test_roots_of_every_prefix_match_the_reference() -> None:
    for size in range(len(LEAVES) + 1):
        assert merkle.root(LEAVES[:size]) == ROOTS[size], size


def test_leaf_and_node_hashes_have_the_rfc_prefixes() -> None:
    assert LEAVES[0].hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert merkle.node_hash(LEAVES[0], LEAVES[1]) == ROOTS[2]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_and_verify(leaf: int, size: int, proof: list[str]) -> None:
    want = [h(p) for p in proof]
    assert merkle.inclusion_proof(leaf - 1, LEAVES[:size]) == want
    merkle.verify_inclusion(leaf - 1, size, LEAVES[leaf - 1], want, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_match_and_verify(old: int, new: int, proof: list[str]) -> None:
    want = [h(p) for p in proof]
    assert merkle.consistency_proof(old, LEAVES[:new]) == want
    merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], want)


def test_corrupted_inclusion_proofs_are_refused() -> None:
    proof = [h(p) for p in INCLUSION[2][2]]  # leaf 6 of 8
    leaf, root = LEAVES[5], ROOTS[8]
    bad_cases = [
        (4, 8, leaf, proof, root), (6, 8, leaf, proof, root),  # wrong index
        (5, 16, leaf, proof, root), (5, 4, leaf, proof, root),  # wrong size
        (5, 8, LEAVES[4], proof, root), (5, 8, leaf, proof, ROOTS[7]),
        (5, 8, leaf, [*proof, root], root), (5, 8, leaf, [root, *proof], root),
        (5, 8, leaf, proof[:-1], root),
        (5, 8, leaf, [bytes([proof[0][0] ^ 8]) + proof[0][1:], *proof[1:]], root),
    ]
    for index, size, lf, pf, rt in bad_cases:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, lf, pf, rt)


def test_corrupted_consistency_proofs_are_refused() -> None:
    proof = [h(p) for p in CONSISTENCY[2][2]]  # 6 -> 8
    r6, r8 = ROOTS[6], ROOTS[8]
    bad_cases = [
        (5, 8, r6, r8, proof), (7, 8, r6, r8, proof), (6, 16, r6, r8, proof),
        (6, 8, r8, r6, proof), (6, 8, ROOTS[5], r8, proof), (6, 8, r6, r8, []),
        (6, 8, r6, r8, [*proof, r6]), (6, 8, r6, r8, [r6, *proof]), (6, 8, r6, r8, proof[:-1]),
        (6, 8, r6, r8, [proof[0], bytes([proof[1][0] ^ 16]) + proof[1][1:], proof[2]]),
        (1, 1, r6, r8, []), (2, 1, r6, r6, []),
    ]
    for old, new, o, n, pf in bad_cases:
        with pytest.raises(ProofError):
            merkle.verify_consistency(old, new, o, n, pf)


def test_every_proof_of_random_trees_verifies() -> None:
    rng = random.Random(6962)
    for n in (1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 33, 100):
        leaves = [merkle.leaf_hash(rng.randbytes(rng.randint(0, 40))) for _ in range(n)]
        top = merkle.root(leaves)
        for i in range(n):
            merkle.verify_inclusion(i, n, leaves[i], merkle.inclusion_proof(i, leaves), top)
        for m in range(n + 1):
            merkle.verify_consistency(m, n, merkle.root(leaves[:m]), top,
                                      merkle.consistency_proof(m, leaves))
