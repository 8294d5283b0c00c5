# STAND-IN for ESP-IDF's tools/cmake/project.cmake -- host tests only.
#
# This is NOT ESP-IDF. It imitates the few parts of ESP-IDF's CMake build
# system that examples/esp32_echo and ports/esp32/usmp use, so that their
# own CMakeLists.txt files, Kconfig defaults and sdkconfig.defaults are
# exercised on a machine without ESP-IDF (tests/esp32/check_host_example.py
# points IDF_PATH at tests/esp32/stand-ins/idf):
#   - project() is wrapped, as ESP-IDF does: it finds the components in
#     EXTRA_COMPONENT_DIRS (a component directory, or a directory whose
#     subdirectories are components; a component is named after its
#     directory), the project's components/ and managed_components/ (each
#     subdirectory with a CMakeLists.txt), and the project's main/; the
#     CMake variable ESP_PLATFORM is 1 while their CMakeLists.txt run;
#   - CONFIG_* values come from the components' Kconfig / Kconfig.projbuild
#     defaults (only "config NAME", a type line and a plain "default"; no
#     "depends on", "if" or "choice"; "rsource" reads a file relative to the
#     one that names it), then sdkconfig.defaults, then the file
#     named by -DSDKCONFIG=...; they are CMake variables in every component
#     and #defines in a generated sdkconfig.h;
#   - idf_component_register() builds a static library __idf_<name> from
#     SRCS with INCLUDE_DIRS (public) and PRIV_INCLUDE_DIRS, linked to what
#     REQUIRES / PRIV_REQUIRES name; ESP-IDF components resolve to the host
#     stand-ins in ../../components (their include directories are visible
#     only to components that require them, or to all for ESP-IDF's common
#     requirements, as in ESP-IDF 5), except mbedtls (the host's real
#     mbedTLS) and lwip (the host's BSD sockets, whose API lwIP mirrors);
#   - the app is linked with host_main.c, whose main() calls app_main().
# ESP_PLATFORM is defined, and C is compiled as gnu17, as ESP-IDF 5 does.
cmake_minimum_required(VERSION 3.16)

get_filename_component(IDF_STANDIN_ROOT "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

# ESP-IDF's common requirements (ESP-IDF 5 build-system guide), of which
# these stand-ins provide the ones USMP uses.
set(IDF_STANDIN_COMMON esp_common esp_hw_support freertos log)
# Every ESP-IDF component name a REQUIRES list may use here.
set(IDF_STANDIN_KNOWN esp_common esp_hw_support freertos log esp_timer esp_event
    esp_netif esp_wifi nvs_flash mbedtls lwip bootloader_support driver mdns)

# --- configuration ------------------------------------------------------------

# The lines of a Kconfig file, each `rsource "path"` replaced by the lines
# of that file (path relative to the directory of the file that names it).
function(idf_standin_kconfig_lines file out)
  file(STRINGS "${file}" raw)
  get_filename_component(dir "${file}" DIRECTORY)
  set(lines "")
  foreach(line IN LISTS raw)
    if(line MATCHES "^[ \t]*rsource[ \t]+\"([^\"]+)\"")
      get_filename_component(sourced "${CMAKE_MATCH_1}" ABSOLUTE BASE_DIR "${dir}")
      if(NOT EXISTS "${sourced}")
        message(FATAL_ERROR "[ESP-IDF stand-in] ${file}: rsource ${sourced} does not exist")
      endif()
      idf_standin_kconfig_lines("${sourced}" sourced_lines)
      list(APPEND lines ${sourced_lines})
    else()
      list(APPEND lines "${line}")
    endif()
  endforeach()
  set(${out} "${lines}" PARENT_SCOPE)
endfunction()

# Reads the defaults of a Kconfig file into IDF_CONFIG_<name>_TYPE/_VALUE.
function(idf_standin_read_kconfig file)
  idf_standin_kconfig_lines("${file}" lines)
  set(name "")
  set(in_help FALSE)
  set(names ${IDF_CONFIG_NAMES})
  foreach(line IN LISTS lines)
    string(STRIP "${line}" line)
    if(line MATCHES "^(menu)?config[ \t]+([A-Za-z0-9_]+)$")
      set(in_help FALSE)
      set(name "${CMAKE_MATCH_2}")
      list(APPEND names "${name}")
      set(IDF_CONFIG_${name}_VALUE "" PARENT_SCOPE)
    elseif(line STREQUAL "help" OR line STREQUAL "---help---")
      set(in_help TRUE)
    elseif(in_help AND NOT line MATCHES "^(endmenu|menu[ \t]|comment[ \t]|source[ \t]|choice)")
      # Help text ends at the next entry; its lines are not options.
    elseif(name AND line MATCHES "^(bool|int|hex|string)([ \t].*)?$")
      set(IDF_CONFIG_${name}_TYPE "${CMAKE_MATCH_1}" PARENT_SCOPE)
      set(type_${name} "${CMAKE_MATCH_1}")
    elseif(name AND line MATCHES "^default[ \t]+(.*)$")
      set(value "${CMAKE_MATCH_1}")
      if(value MATCHES "^\"(.*)\"$")
        set(value "${CMAKE_MATCH_1}")
      endif()
      if(type_${name} STREQUAL "bool" AND value STREQUAL "n")
        set(value "")
      endif()
      set(IDF_CONFIG_${name}_VALUE "${value}" PARENT_SCOPE)
    elseif(line MATCHES "^(endmenu|menu[ \t]|comment[ \t]|source[ \t]|choice)")
      set(name "")
      set(in_help FALSE)
    endif()
  endforeach()
  list(REMOVE_DUPLICATES names)
  set(IDF_CONFIG_NAMES ${names} PARENT_SCOPE)
endfunction()

# Applies an sdkconfig-format file (CONFIG_X=value, "# CONFIG_X is not set").
function(idf_standin_read_sdkconfig file)
  file(STRINGS "${file}" lines)
  foreach(line IN LISTS lines)
    if(line MATCHES "^CONFIG_([A-Za-z0-9_]+)=(.*)$")
      set(name "${CMAKE_MATCH_1}")
      set(value "${CMAKE_MATCH_2}")
      if(value MATCHES "^\"(.*)\"$")
        set(value "${CMAKE_MATCH_1}")
      endif()
      if(value STREQUAL "n")
        set(value "")
      endif()
    elseif(line MATCHES "^# CONFIG_([A-Za-z0-9_]+) is not set")
      set(name "${CMAKE_MATCH_1}")
      set(value "")
    else()
      continue()
    endif()
    # Options of ESP-IDF's own components (CONFIG_FREERTOS_HZ, ...) have no
    # Kconfig here: they are accepted and passed on as given.
    if(NOT name IN_LIST IDF_CONFIG_NAMES)
      list(APPEND IDF_CONFIG_NAMES "${name}")
      set(IDF_CONFIG_NAMES ${IDF_CONFIG_NAMES} PARENT_SCOPE)
      if(value MATCHES "^-?[0-9]+$")
        set(IDF_CONFIG_${name}_TYPE int PARENT_SCOPE)
      elseif(value STREQUAL "y")
        set(IDF_CONFIG_${name}_TYPE bool PARENT_SCOPE)
      else()
        set(IDF_CONFIG_${name}_TYPE string PARENT_SCOPE)
      endif()
    endif()
    set(IDF_CONFIG_${name}_VALUE "${value}" PARENT_SCOPE)
  endforeach()
endfunction()

# --- components ----------------------------------------------------------------

# Links `target` to the component `req` with visibility `vis`.
function(idf_standin_link target vis req)
  if(req IN_LIST IDF_STANDIN_PROJECT_COMPONENTS)
    target_link_libraries(${target} ${vis} __idf_${req})
  elseif(req STREQUAL "mbedtls")
    target_include_directories(${target} SYSTEM ${vis} "${IDF_STANDIN_MBEDTLS_INCLUDE}")
    target_link_libraries(${target} ${vis} "${IDF_STANDIN_MBEDCRYPTO}")
  elseif(req STREQUAL "lwip")
    # The host's socket headers are on the default include path already.
  elseif(req IN_LIST IDF_STANDIN_KNOWN)
    target_link_libraries(${target} ${vis} idf_standin_${req})
  else()
    message(FATAL_ERROR "[ESP-IDF stand-in] component ${COMPONENT_NAME} requires '${req}', "
                        "which is neither a project component nor one of the stand-ins "
                        "(${IDF_STANDIN_KNOWN})")
  endif()
endfunction()

macro(idf_component_register)
  cmake_parse_arguments(_reg "" "KCONFIG;KCONFIG_PROJBUILD"
    "SRCS;SRC_DIRS;EXCLUDE_SRCS;INCLUDE_DIRS;PRIV_INCLUDE_DIRS;REQUIRES;PRIV_REQUIRES;LDFRAGMENTS;REQUIRED_IDF_TARGETS;EMBED_FILES;EMBED_TXTFILES"
    ${ARGN})
  if(_reg_SRC_DIRS OR _reg_EMBED_FILES OR _reg_EMBED_TXTFILES OR _reg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "[ESP-IDF stand-in] ${COMPONENT_NAME}: only SRCS, INCLUDE_DIRS, "
                        "PRIV_INCLUDE_DIRS, REQUIRES and PRIV_REQUIRES are imitated")
  endif()
  set(COMPONENT_LIB __idf_${COMPONENT_NAME})
  set(_reg_sources "")
  foreach(_src IN LISTS _reg_SRCS)
    get_filename_component(_src "${_src}" ABSOLUTE BASE_DIR "${COMPONENT_DIR}")
    if(NOT EXISTS "${_src}")
      message(FATAL_ERROR "[ESP-IDF stand-in] ${COMPONENT_NAME}: source ${_src} does not exist")
    endif()
    list(APPEND _reg_sources "${_src}")
  endforeach()
  add_library(${COMPONENT_LIB} STATIC ${_reg_sources})
  foreach(_dir IN LISTS _reg_INCLUDE_DIRS)
    get_filename_component(_dir "${_dir}" ABSOLUTE BASE_DIR "${COMPONENT_DIR}")
    target_include_directories(${COMPONENT_LIB} PUBLIC "${_dir}")
  endforeach()
  foreach(_dir IN LISTS _reg_PRIV_INCLUDE_DIRS)
    get_filename_component(_dir "${_dir}" ABSOLUTE BASE_DIR "${COMPONENT_DIR}")
    target_include_directories(${COMPONENT_LIB} PRIVATE "${_dir}")
  endforeach()
  foreach(_req IN LISTS IDF_STANDIN_COMMON)
    idf_standin_link(${COMPONENT_LIB} PUBLIC ${_req})
  endforeach()
  foreach(_req IN LISTS _reg_REQUIRES)
    idf_standin_link(${COMPONENT_LIB} PUBLIC ${_req})
  endforeach()
  foreach(_req IN LISTS _reg_PRIV_REQUIRES)
    idf_standin_link(${COMPONENT_LIB} PRIVATE ${_req})
  endforeach()
  target_include_directories(${COMPONENT_LIB} PUBLIC "${IDF_STANDIN_CONFIG_DIR}")
  target_compile_options(${COMPONENT_LIB} PRIVATE ${IDF_STANDIN_WARNINGS})
endmacro()

# --- the project ---------------------------------------------------------------

macro(project project_name)
  _project(${project_name} C)
  set(CMAKE_C_STANDARD 17)
  set(CMAKE_C_STANDARD_REQUIRED ON)
  set(CMAKE_C_EXTENSIONS ON)
  add_compile_definitions(ESP_PLATFORM=1 IDF_VER="host-stand-in")
  set(ESP_PLATFORM 1)
  # Stricter than ESP-IDF's defaults (-Wall -Wextra, some errors relaxed).
  set(IDF_STANDIN_WARNINGS -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
      -Wmissing-prototypes -Wformat=2 -Wundef)

  find_library(IDF_STANDIN_MBEDCRYPTO mbedcrypto REQUIRED)
  find_path(IDF_STANDIN_MBEDTLS_INCLUDE mbedtls/version.h REQUIRED)

  # Components: EXTRA_COMPONENT_DIRS entries, then main/.
  set(IDF_STANDIN_PROJECT_COMPONENTS "")
  set(_dirs "")
  foreach(_extra IN LISTS EXTRA_COMPONENT_DIRS)
    get_filename_component(_extra "${_extra}" ABSOLUTE BASE_DIR "${CMAKE_SOURCE_DIR}")
    if(NOT IS_DIRECTORY "${_extra}")
      message(FATAL_ERROR "[ESP-IDF stand-in] EXTRA_COMPONENT_DIRS: ${_extra} is not a directory")
    endif()
    if(EXISTS "${_extra}/CMakeLists.txt")
      list(APPEND _dirs "${_extra}")
    else()
      file(GLOB _children LIST_DIRECTORIES true "${_extra}/*")
      foreach(_child IN LISTS _children)
        if(EXISTS "${_child}/CMakeLists.txt")
          list(APPEND _dirs "${_child}")
        endif()
      endforeach()
    endif()
  endforeach()
  # The project's own component directories, as ESP-IDF scans them: a
  # clone of a component's repository under components/, or what the
  # component manager unpacked under managed_components/.
  foreach(_project_dir components managed_components)
    file(GLOB _children LIST_DIRECTORIES true "${CMAKE_SOURCE_DIR}/${_project_dir}/*")
    list(SORT _children)
    foreach(_child IN LISTS _children)
      if(EXISTS "${_child}/CMakeLists.txt")
        list(APPEND _dirs "${_child}")
      endif()
    endforeach()
  endforeach()
  list(APPEND _dirs "${CMAKE_SOURCE_DIR}/main")
  foreach(_dir IN LISTS _dirs)
    get_filename_component(_name "${_dir}" NAME)
    list(APPEND IDF_STANDIN_PROJECT_COMPONENTS "${_name}")
  endforeach()
  message(STATUS "[ESP-IDF stand-in] components: ${IDF_STANDIN_PROJECT_COMPONENTS}")

  # Configuration: Kconfig defaults < sdkconfig.defaults < SDKCONFIG.
  set(IDF_CONFIG_NAMES "")
  foreach(_dir IN LISTS _dirs)
    foreach(_kconfig Kconfig Kconfig.projbuild)
      if(EXISTS "${_dir}/${_kconfig}")
        idf_standin_read_kconfig("${_dir}/${_kconfig}")
      endif()
    endforeach()
  endforeach()
  if(EXISTS "${CMAKE_SOURCE_DIR}/sdkconfig.defaults")
    idf_standin_read_sdkconfig("${CMAKE_SOURCE_DIR}/sdkconfig.defaults")
  endif()
  if(SDKCONFIG)
    idf_standin_read_sdkconfig("${SDKCONFIG}")
  endif()
  set(IDF_STANDIN_CONFIG_DIR "${CMAKE_BINARY_DIR}/config")
  set(_header "/* Generated by the ESP-IDF STAND-IN (tests/esp32/stand-ins), not by ESP-IDF. */\n")
  foreach(_name IN LISTS IDF_CONFIG_NAMES)
    set(_value "${IDF_CONFIG_${_name}_VALUE}")
    set(_type "${IDF_CONFIG_${_name}_TYPE}")
    set(CONFIG_${_name} "${_value}")
    if(_type STREQUAL "bool")
      if(_value STREQUAL "y")
        string(APPEND _header "#define CONFIG_${_name} 1\n")
      endif()
    elseif(_type STREQUAL "string")
      string(REPLACE "\\" "\\\\" _value "${_value}")
      string(REPLACE "\"" "\\\"" _value "${_value}")
      string(APPEND _header "#define CONFIG_${_name} \"${_value}\"\n")
    elseif(NOT _value STREQUAL "")
      string(APPEND _header "#define CONFIG_${_name} ${_value}\n")
    endif()
  endforeach()
  file(WRITE "${IDF_STANDIN_CONFIG_DIR}/sdkconfig.h" "${_header}")

  # The ESP-IDF stand-ins, one library per component, as in ESP-IDF.
  foreach(_c esp_common log esp_hw_support esp_timer freertos esp_event esp_netif
             esp_wifi nvs_flash bootloader_support driver mdns)
    file(GLOB _c_sources "${IDF_STANDIN_ROOT}/components/${_c}/*.c")
    add_library(idf_standin_${_c} STATIC ${_c_sources})
    target_include_directories(idf_standin_${_c} PUBLIC
      "${IDF_STANDIN_ROOT}/components/${_c}/include" "${IDF_STANDIN_CONFIG_DIR}")
    target_compile_options(idf_standin_${_c} PRIVATE ${IDF_STANDIN_WARNINGS})
  endforeach()
  foreach(_c log esp_hw_support esp_timer freertos esp_event esp_netif esp_wifi nvs_flash
             bootloader_support driver)
    target_link_libraries(idf_standin_${_c} PUBLIC idf_standin_esp_common)
  endforeach()
  target_link_libraries(idf_standin_log PRIVATE idf_standin_esp_timer)
  target_link_libraries(idf_standin_esp_netif PUBLIC idf_standin_esp_event)
  target_link_libraries(idf_standin_driver PUBLIC idf_standin_freertos)
  target_link_libraries(idf_standin_mdns PUBLIC idf_standin_esp_netif)
  target_link_libraries(idf_standin_esp_wifi PUBLIC idf_standin_esp_event idf_standin_esp_netif)

  foreach(_dir IN LISTS _dirs)
    get_filename_component(COMPONENT_NAME "${_dir}" NAME)
    set(COMPONENT_DIR "${_dir}")
    add_subdirectory("${_dir}" "${CMAKE_BINARY_DIR}/esp-idf/${COMPONENT_NAME}")
  endforeach()

  add_executable(${project_name}.elf "${IDF_STANDIN_ROOT}/host_main.c")
  target_compile_options(${project_name}.elf PRIVATE ${IDF_STANDIN_WARNINGS})
  target_link_libraries(${project_name}.elf PRIVATE __idf_main)
endmacro()
