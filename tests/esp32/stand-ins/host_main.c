/*
 * STAND-IN for ESP-IDF's startup code -- host tests only. ESP-IDF boots
 * the chip, starts FreeRTOS and calls app_main() in the main task; on the
 * host, main() calls it directly. The exit status is always 0: the test
 * judges the run by the log lines (tests/esp32/check_host_example.py).
 */
void app_main(void);

int main(void)
{
    app_main();
    return 0;
}
