// The Catch2 main for every <unit>_test executable.
#define CATCH_CONFIG_MAIN
#include "catch.h"
