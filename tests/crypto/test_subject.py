from crypto.subject import SubjectHasher


def test_the_subject_hash_is_stable_per_secret_and_differs_between_secrets_and_holders() -> None:
    a, b = SubjectHasher(b"k" * 32), SubjectHasher(b"j" * 32)
    assert a.of("H-1") == SubjectHasher(b"k" * 32).of("H-1")
    assert a.of("H-1") != a.of("H-2")
    assert a.of("H-1") != b.of("H-1")
    assert SubjectHasher.looks_like(a.of("H-1"))
    assert "H-1" not in a.of("H-1") and "***" in repr(a)


def test_looks_like_refuses_other_shapes() -> None:
    assert not SubjectHasher.looks_like("H-1")
    assert not SubjectHasher.looks_like("sh_" + "g" * 32)
    assert not SubjectHasher.looks_like("sh_" + "a" * 31)
