/*
 * STAND-IN host implementation of ESP-IDF's UART driver -- host tests
 * only, not ESP-IDF code. There is no UART on the host: installing the
 * driver fails with ESP_ERR_NOT_FOUND, so an application that picks the
 * UART transport sees usmp_connect fail with USMP_ERR_TRANSPORT, as on a
 * board whose UART cannot be set up; every other call reports the driver
 * as not installed.
 */
#include "driver/uart.h"

esp_err_t uart_driver_install(uart_port_t uart_num, int rx_buffer_size, int tx_buffer_size,
                              int queue_size, QueueHandle_t *uart_queue, int intr_alloc_flags)
{
    (void)uart_num;
    (void)rx_buffer_size;
    (void)tx_buffer_size;
    (void)queue_size;
    (void)uart_queue;
    (void)intr_alloc_flags;
    return ESP_ERR_NOT_FOUND;
}

esp_err_t uart_driver_delete(uart_port_t uart_num)
{
    (void)uart_num;
    return ESP_ERR_INVALID_STATE;
}

esp_err_t uart_param_config(uart_port_t uart_num, const uart_config_t *uart_config)
{
    (void)uart_num;
    (void)uart_config;
    return ESP_ERR_INVALID_STATE;
}

int uart_read_bytes(uart_port_t uart_num, void *buf, uint32_t length, TickType_t ticks_to_wait)
{
    (void)uart_num;
    (void)buf;
    (void)length;
    (void)ticks_to_wait;
    return -1;
}

int uart_write_bytes(uart_port_t uart_num, const void *src, size_t size)
{
    (void)uart_num;
    (void)src;
    (void)size;
    return -1;
}

esp_err_t uart_wait_tx_done(uart_port_t uart_num, TickType_t ticks_to_wait)
{
    (void)uart_num;
    (void)ticks_to_wait;
    return ESP_ERR_INVALID_STATE;
}

esp_err_t uart_get_buffered_data_len(uart_port_t uart_num, size_t *size)
{
    (void)uart_num;
    *size = 0;
    return ESP_ERR_INVALID_STATE;
}

esp_err_t uart_flush_input(uart_port_t uart_num)
{
    (void)uart_num;
    return ESP_ERR_INVALID_STATE;
}
