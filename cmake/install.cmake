# install.cmake: `cmake --install BUILD [--prefix P]` puts
#   bin/moec                     the compiler
#   lib/moec/libmoert{,_main}.a  the runtime moec links compiled executables with (compiler/artifact.c
#                                looks in <moec>/../lib/moec; the AArch64 one in lib/moec/aarch64)
#   lib/libmoert.a, libmoert.so  the runtime for programs of your own (runtime/include/moe.h)
#   include/moe.h, lib/pkgconfig/moert.pc   so that `pkg-config --cflags --libs moert` builds them
# libmoert.so is the same sources as libmoert.a; only moe.h's API (and moert_barrier, which
# compiled steps call) is exported.
get_target_property(MOERT_SOURCES_ALL moert SOURCES)
add_library(moert_shared SHARED ${MOERT_SOURCES_ALL})
get_target_property(MOERT_INCLUDES moert INCLUDE_DIRECTORIES)
target_include_directories(moert_shared PRIVATE ${MOERT_INCLUDES})
target_link_libraries(moert_shared PRIVATE OpenMP::OpenMP_C m)
set_target_properties(moert_shared PROPERTIES OUTPUT_NAME moert C_VISIBILITY_PRESET hidden)

include(GNUInstallDirs)
install(TARGETS moec RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS moert moert_main ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}/moec)
install(TARGETS moert moert_shared ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/runtime/include/moe.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(MOEC_AARCH64_RUNTIME_DIR)
  install(FILES ${MOEC_AARCH64_RUNTIME_DIR}/libmoert.a ${MOEC_AARCH64_RUNTIME_DIR}/libmoert_main.a
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/moec/aarch64)
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/moert.pc.in ${PROJECT_BINARY_DIR}/moert.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/moert.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
