// Catch2 include shim (STYLE T1): isolates the v2 (Debian's 2.13) / v3 paths.
#pragma once
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
