#include <cstdio>
int main() { std::puts("plx: under construction"); return 0; }
