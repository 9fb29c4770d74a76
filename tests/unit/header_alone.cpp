// The public header compiles on its own in C++: the same check as
// header_alone.c, built by the C++ compiler.
#include "header_alone.c"
