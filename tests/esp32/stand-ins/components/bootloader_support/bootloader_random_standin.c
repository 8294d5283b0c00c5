/*
 * STAND-IN host implementation of bootloader_random.h -- host tests only,
 * not ESP-IDF code. See include/bootloader_random.h.
 */
#include "bootloader_random.h"

static int depth;

void bootloader_random_enable(void)
{
    depth++;
}

void bootloader_random_disable(void)
{
    depth--;
}

int idf_standin_bootloader_random_depth(void)
{
    return depth;
}
