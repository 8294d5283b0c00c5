/*
 * STAND-IN for ESP-IDF's esp_partition.h (components/esp_partition/include/
 * esp_partition.h) -- host cross-compile checks only, not ESP-IDF code. It
 * declares only what USMP's OTA port (ports/esp32/usmp/usmp_ota_esp32.c)
 * uses, with ESP-IDF 5's signatures; nothing implements it here.
 */
#ifndef IDF_STANDIN_ESP_PARTITION_H
#define IDF_STANDIN_ESP_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

typedef uint32_t esp_partition_mmap_handle_t;
typedef enum { ESP_PARTITION_MMAP_DATA, ESP_PARTITION_MMAP_INST } esp_partition_mmap_memory_t;

/* The fields USMP reads; ESP-IDF's struct has more. */
typedef struct {
    uint32_t address;
    uint32_t size;
    uint32_t erase_size;
    char label[17];
} esp_partition_t;

esp_err_t esp_partition_write(const esp_partition_t *partition, size_t dst_offset, const void *src,
                              size_t size);
esp_err_t esp_partition_mmap(const esp_partition_t *partition, size_t offset, size_t size,
                             esp_partition_mmap_memory_t memory, const void **out_ptr,
                             esp_partition_mmap_handle_t *out_handle);
void esp_partition_munmap(esp_partition_mmap_handle_t handle);

#endif
