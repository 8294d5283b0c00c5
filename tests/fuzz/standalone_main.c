/*
 * standalone_main.c - runs a libFuzzer target once on each file named on
 * the command line, for builds without libFuzzer (the regression run of
 * the fuzz seeds in every ctest configuration).
 */
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    static uint8_t buf[1 << 16];
    int i;

    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        size_t n;
        if (f == NULL) {
            fprintf(stderr, "cannot open %s\n", argv[i]);
            return 1;
        }
        n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("%s: %d inputs replayed, no invariant broken\n", argv[0], argc - 1);
    return 0;
}
