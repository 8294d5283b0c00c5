/*
 * STAND-IN for ESP-IDF's esp_log.h (components/log/include/esp_log.h) --
 * host tests only, not ESP-IDF code. ESP_LOGx print one line in ESP-IDF's
 * format, "I (<ms since start>) <tag>: <message>", without colours; the
 * format string is checked like printf's. Debug and verbose levels are
 * dropped, as at ESP-IDF's default log level (INFO).
 */
#ifndef IDF_STANDIN_ESP_LOG_H
#define IDF_STANDIN_ESP_LOG_H

void idf_standin_log(char level, const char *tag, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

#define ESP_LOGE(tag, format, ...) idf_standin_log('E', tag, format, ##__VA_ARGS__)
#define ESP_LOGW(tag, format, ...) idf_standin_log('W', tag, format, ##__VA_ARGS__)
#define ESP_LOGI(tag, format, ...) idf_standin_log('I', tag, format, ##__VA_ARGS__)
#define ESP_LOGD(tag, format, ...) ((void)(tag))
#define ESP_LOGV(tag, format, ...) ((void)(tag))

#endif
