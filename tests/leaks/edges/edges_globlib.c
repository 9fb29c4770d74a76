/* A library dlopen'ed by `edges dlopen-global`, which stores a pointer in
 * edges_lib_global (its .bss): memcheck and LSan: still reachable. */
void *edges_lib_global;
