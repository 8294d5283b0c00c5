# The component's options (Kconfig) as compile definitions of its library,
# ${COMPONENT_LIB}. Included by the repository's root CMakeLists.txt after
# idf_component_register, where the CONFIG_* values are known.

if(CONFIG_USMP_MAX_MESSAGE LESS CONFIG_USMP_MAX_RECORD)
    message(FATAL_ERROR "USMP: CONFIG_USMP_MAX_MESSAGE (${CONFIG_USMP_MAX_MESSAGE}) must be at "
                        "least CONFIG_USMP_MAX_RECORD (${CONFIG_USMP_MAX_RECORD}); see menuconfig > USMP")
endif()

# The features (usmp_options.h): a bool left at "n" is an empty CONFIG_
# value, so each is spelled out as 0 or 1. The defaults give the device
# profile: client role over a stream transport, with error sentences.
foreach(_usmp_feature SERVER DATAGRAM ERROR_TEXT OTA AEAD_KEEP_CONTEXT)
    if(CONFIG_USMP_${_usmp_feature})
        set(_usmp_${_usmp_feature} 1)
    else()
        set(_usmp_${_usmp_feature} 0)
    endif()
endforeach()

# PUBLIC: usmp_ctx_t embeds buffers sized by the first two, and
# USMP_SERVER and USMP_DATAGRAM add or remove fields of usmp_engine_t inside
# it, and USMP_AEAD_KEEP_CONTEXT makes its two record keys a GCM context each
# or the key alone, so every file that includes usmp.h must see the values
# the library was compiled with, or the application and the library would
# disagree on the layout of usmp_ctx_t. USMP_ERROR_TEXT changes no layout; it
# is PUBLIC so that an application testing it sees the library's value, not
# the default.
target_compile_definitions(${COMPONENT_LIB} PUBLIC
    USMP_MAX_RECORD=${CONFIG_USMP_MAX_RECORD}
    USMP_MAX_MESSAGE=${CONFIG_USMP_MAX_MESSAGE}
    USMP_SERVER=${_usmp_SERVER}
    USMP_DATAGRAM=${_usmp_DATAGRAM}
    USMP_ERROR_TEXT=${_usmp_ERROR_TEXT}
    USMP_OTA=${_usmp_OTA}
    USMP_AEAD_KEEP_CONTEXT=${_usmp_AEAD_KEEP_CONTEXT})

# CONFIG_USMP_OTA: the OTA module, its flash hooks on app_update and
# esp_partition, its progress record in NVS, and Ed25519 from libsodium
# (mbedTLS has none). Added here, below idf_component_register, because the
# CONFIG_ value is only known in this pass.
if(CONFIG_USMP_OTA)
    target_sources(${COMPONENT_LIB} PRIVATE
        "${_usmp_root}/ota/usmp_ota.c"
        "${_usmp_root}/ports/esp32/usmp/usmp_ota_esp32.c"
        "${_usmp_root}/crypto/ed25519/usmp_ed25519_libsodium.c")
    target_include_directories(${COMPONENT_LIB} PUBLIC "${_usmp_root}/ports/esp32/usmp")
    target_compile_definitions(${COMPONENT_LIB} PRIVATE USMP_ED25519_EXTERNAL=1)
    # The registry's component is espressif__libsodium; a local copy may be
    # called libsodium.
    idf_build_get_property(_usmp_components BUILD_COMPONENTS)
    if("espressif__libsodium" IN_LIST _usmp_components)
        set(_usmp_sodium espressif__libsodium)
    elseif("libsodium" IN_LIST _usmp_components)
        set(_usmp_sodium libsodium)
    else()
        message(FATAL_ERROR "USMP: CONFIG_USMP_OTA needs the libsodium component "
                            "(idf.py add-dependency espressif/libsodium)")
    endif()
    target_link_libraries(${COMPONENT_LIB} PRIVATE idf::app_update idf::esp_partition
                          idf::nvs_flash idf::${_usmp_sodium})
endif()

# PRIVATE: read only by the library's own .c files.
if(CONFIG_USMP_LOG)
    set(_usmp_log 1)
else()
    set(_usmp_log 0)
endif()
target_compile_definitions(${COMPONENT_LIB} PRIVATE
    USMP_HANDSHAKE_TIMEOUT_MS=${CONFIG_USMP_HANDSHAKE_TIMEOUT_MS}u
    USMP_LOG=${_usmp_log})
