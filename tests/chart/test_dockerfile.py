"""No Docker engine runs on our machines, so the Dockerfile is kept correct by reading it: these
checks pin what the image promises (multi-stage, the same build command as CI, build facts in
/version, non-root, both ports, no shell)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
TEST_SCRIPT = (ROOT / "scripts" / "test.sh").read_text()
BUILD = "cargo build --release --locked"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        result[-1].append(ins)
    return result


def test_multi_stage_with_a_small_final_image():
    build, final = stages()
    assert build[0][1].endswith("AS build")
    assert "distroless" in final[0][1], "the final image has no shell or package manager"


def test_builds_with_the_command_ci_uses():
    build = stages()[0]
    runs = " ".join(args for word, args in build if word == "RUN")
    assert BUILD in runs
    assert BUILD in TEST_SCRIPT, "CI must build the release binary the way the image does"
    assert "cmake" in runs, "pingora-core needs cmake"


def test_build_facts_reach_the_binary():
    build = stages()[0]
    args = {a.split("=")[0] for word, a in build if word == "ARG"}
    assert args >= {"VERSION", "GIT_COMMIT", "BUILD_DATE"}
    env = " ".join(a for word, a in build if word == "ENV")
    for name in ("VERSION", "GIT_COMMIT", "BUILD_DATE"):
        assert f"{name}=${{{name}}}" in env, f"{name} is not passed to build.rs"
    # build.rs reads exactly these names.
    build_rs = (ROOT / "build.rs").read_text()
    for name in ("VERSION", "GIT_COMMIT", "BUILD_DATE"):
        assert f'"{name}"' in build_rs


def test_runs_as_non_root_and_exposes_both_ports():
    final = stages()[-1]
    user = [a for word, a in final if word == "USER"]
    assert user and not user[-1].startswith(("0", "root")), user
    exposed = " ".join(a for word, a in final if word == "EXPOSE").split()
    assert exposed == ["8080", "9182"], "LISTEN_PORT and METRICS_PORT defaults"
    entry = [a for word, a in final if word == "ENTRYPOINT"]
    assert entry == ['["/usr/local/bin/prometheus-tunnel"]']
    copies = " ".join(a for word, a in final if word == "COPY")
    assert "--from=build" in copies and "conf/tunnel.yaml" in copies


def test_dockerignore_keeps_the_context_small():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target/" in ignored


def test_base_images_are_pinned_by_digest_with_a_note_on_updating():
    for stage in stages():
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}", image), image
    assert "docker buildx imagetools inspect" in DOCKERFILE, "how to update the digests"


def test_reproducible_build_facts():
    build = stages()[0]
    args = {a.split("=")[0] for word, a in build if word == "ARG"}
    assert "SOURCE_DATE_EPOCH" in args
    env = " ".join(a for word, a in build if word == "ENV")
    assert "SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}" in env
    assert '"SOURCE_DATE_EPOCH"' in (ROOT / "build.rs").read_text(), "build.rs dates the build from it"


def test_dependencies_build_in_a_layer_of_their_own():
    build = stages()[0]
    words = [(w, a) for w, a in build]
    manifests = next(i for i, (w, a) in enumerate(words) if w == "COPY" and "Cargo.toml" in a and "Cargo.lock" in a)
    everything = next(i for i, (w, a) in enumerate(words) if w == "COPY" and a.split()[0] == ".")
    deps_build = [i for i, (w, a) in enumerate(words) if w == "RUN" and BUILD in a]
    assert manifests < deps_build[0] < everything < deps_build[-1], words
    # The stub build leaves no fingerprint of the tunnel itself, so the real sources rebuild it.
    assert "rm -rf src benches target/release/.fingerprint/prometheus-tunnel-*" in words[deps_build[0]][1]
