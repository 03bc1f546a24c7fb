# `cmake --install build --prefix P` lays out:
#   P/include/setdet/**.h               every header of src/setdet (their includes resolve inside it)
#   P/lib/libsetdet.a, libsetdet_core.a, libsetdet_ops.so
#   P/bin/setdet                        the CLI
#   P/share/setdet/configs/             the YAML configs
#   P/lib/cmake/setdet/                 setdetConfig.cmake, its version file, the exported targets
# Exported targets: setdet::setdet (the detection library, linked whole-archive because its
# components register themselves from static initialisers), setdet::core (pure C++17, no
# LibTorch), setdet::ops (the torch.ops.setdet.* operators).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SETDET_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/setdet)

foreach(target setdet_core setdet_ops setdet)
  target_include_directories(${target} INTERFACE $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
endforeach()
set_target_properties(setdet_core PROPERTIES EXPORT_NAME core)
set_target_properties(setdet_ops PROPERTIES EXPORT_NAME ops)
set_target_properties(setdet PROPERTIES EXPORT_NAME setdet_static)

# What users link: the static library with every object kept (registries fill at load time).
add_library(setdet_whole_archive INTERFACE)
# (export does not rename targets inside $<LINK_LIBRARY:...>: name the installed one explicitly)
target_link_libraries(setdet_whole_archive INTERFACE
  "$<BUILD_INTERFACE:$<LINK_LIBRARY:WHOLE_ARCHIVE,setdet>>"
  "$<INSTALL_INTERFACE:$<LINK_LIBRARY:WHOLE_ARCHIVE,setdet::setdet_static>>")
set_target_properties(setdet_whole_archive PROPERTIES EXPORT_NAME setdet)

set_target_properties(setdet_cli PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")

install(TARGETS setdet_core setdet_ops setdet setdet_whole_archive setdet_cli
  EXPORT setdetTargets
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/src/setdet DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(DIRECTORY ${CMAKE_SOURCE_DIR}/configs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/setdet/configs)
install(EXPORT setdetTargets NAMESPACE setdet:: DESTINATION ${SETDET_CMAKE_DIR})

configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/setdetConfig.cmake.in
  ${CMAKE_BINARY_DIR}/setdetConfig.cmake INSTALL_DESTINATION ${SETDET_CMAKE_DIR}
  PATH_VARS CMAKE_INSTALL_DATADIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/setdetConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/setdetConfig.cmake ${CMAKE_BINARY_DIR}/setdetConfigVersion.cmake
  DESTINATION ${SETDET_CMAKE_DIR})

# ---- cpack -G DEB (run in the build directory after building) ----
set(CPACK_PACKAGE_NAME setdet)
set(CPACK_PACKAGE_VENDOR "setdet")
set(CPACK_PACKAGE_CONTACT "setdet maintainers <setdet@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "setdet: object detection toolbox on LibTorch (C++ library, CMake package, CLI, configs)")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
# the CMake package's find_dependency calls need the -dev packages (their CMake configs and
# headers); they pull in the runtime libraries the CLI and libsetdet_ops.so load
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libtorch-dev (>= 1.13), libopencv-dev, libsimdjson-dev, zlib1g-dev, libyaml-cpp-dev, libspdlog-dev, libfmt-dev, libgloo-dev, libxgboost-dev, libdnnl-dev")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
include(CPack)
