"""C++ rule wrappers for relay: shared warnings and defaults.

Warnings apply to our own sources only; system-library headers come in through
-isystem (see bazel/<dep>.BUILD), so their warnings don't trip -Werror.
"""

RELAY_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
]

def relay_cc_library(name, copts = [], **kwargs):
    native.cc_library(
        name = name,
        copts = RELAY_COPTS + copts,
        **kwargs
    )

def relay_cc_binary(name, copts = [], **kwargs):
    native.cc_binary(
        name = name,
        copts = RELAY_COPTS + copts,
        **kwargs
    )

def relay_cc_test(name, copts = [], size = "medium", **kwargs):
    native.cc_test(
        name = name,
        copts = RELAY_COPTS + copts,
        size = size,
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
