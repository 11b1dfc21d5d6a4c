"""C++ rule wrappers for relay: shared warnings and defaults.

Warnings apply to our own sources only; system-library headers come in through
-isystem (see bazel/<dep>.BUILD), so their warnings don't trip -Werror.
"""

RELAY_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
]

# relay's own packages: warnings are errors there. A program of a user's, in a
# package of its own, gets the warnings but not -Werror: an unused parameter in
# their code must not fail their build.
_RELAY_PACKAGES = ["core", "broker", "workers", "examples", "tests", "bench", "bazel"]

def _copts_for_package():
    top = native.package_name().split("/")[0]
    if top in _RELAY_PACKAGES:
        return RELAY_COPTS
    return ["-Wall", "-Wextra"]

def relay_cc_library(name, copts = [], **kwargs):
    native.cc_library(
        name = name,
        copts = RELAY_COPTS + copts,
        **kwargs
    )

def relay_cc_binary(name, copts = [], **kwargs):
    """A program linked with relay (README "A first program")."""
    native.cc_binary(
        name = name,
        copts = _copts_for_package() + copts,
        **kwargs
    )

def relay_cc_test(name, copts = [], size = "medium", data = [], **kwargs):
    native.cc_test(
        name = name,
        copts = RELAY_COPTS + copts,
        size = size,
        # Read by TSAN_OPTIONS under --config=tsan (see .bazelrc).
        data = data + ["//bazel:tsan.supp"],
        **kwargs
    )

def relay_cc_fuzzer(name, copts = [], deps = [], linkopts = [], tags = [], **kwargs):
    """A libFuzzer target (sources define LLVMFuzzerTestOneInput).

    Under --config=fuzz (clang) it links libFuzzer (-fsanitize=fuzzer). In any
    other configuration it links //bazel:fuzz_standalone_main instead, which
    replays the files given as arguments, so `bazel build //...` still works
    with gcc. Build and run: bazel run --config=fuzz //pkg:name -- -max_total_time=60
    """
    native.cc_binary(
        name = name,
        copts = RELAY_COPTS + copts,
        deps = deps + select({
            "//bazel:fuzzing": [],
            "//conditions:default": ["//bazel:fuzz_standalone_main"],
        }),
        linkopts = linkopts + select({
            "//bazel:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        tags = tags + ["fuzzer"],
        **kwargs
    )
