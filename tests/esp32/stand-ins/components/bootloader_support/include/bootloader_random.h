/*
 * STAND-IN for ESP-IDF's bootloader_random.h (components/bootloader_support/
 * include/bootloader_random.h) -- host tests only, not ESP-IDF code. On the
 * chip these switch the SAR ADC noise source that feeds the hardware RNG on
 * and off; the host has no such source (its esp_fill_random stand-in reads
 * the kernel's CSPRNG), so here they only count, for the tests.
 */
#ifndef IDF_STANDIN_BOOTLOADER_RANDOM_H
#define IDF_STANDIN_BOOTLOADER_RANDOM_H

void bootloader_random_enable(void);
void bootloader_random_disable(void);

/* Stand-in only: how many times the source is on now (enable - disable). */
int idf_standin_bootloader_random_depth(void);

#endif
