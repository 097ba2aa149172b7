# Install and export (STYLE S7). Headers go under <prefix>/include/symopt/ and
# the exported targets add that folder to the include path.
include(CMakePackageConfigHelpers)
set(_symopt_targets symopt)
if(SYMOPT_HAS_CUDA)
  list(APPEND _symopt_targets symopt_cuda)
endif()
if(SYMOPT_HAS_CERES)
  list(APPEND _symopt_targets symopt_ceres)
endif()
if(SYMOPT_HAS_TORCH)
  list(APPEND _symopt_targets symopt_torch)
endif()
install(TARGETS ${_symopt_targets} EXPORT symoptTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/symopt)
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/symopt
        FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/generated/symopt_config.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/symopt)
install(EXPORT symoptTargets NAMESPACE symopt::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/symopt)
export(EXPORT symoptTargets NAMESPACE symopt::
       FILE ${PROJECT_BINARY_DIR}/symoptTargets.cmake)
set(SYMOPT_COMPILED_COMPONENTS "")
if(SYMOPT_HAS_CUDA)
  list(APPEND SYMOPT_COMPILED_COMPONENTS CUDA)
endif()
if(SYMOPT_HAS_CERES)
  list(APPEND SYMOPT_COMPILED_COMPONENTS Ceres)
endif()
if(SYMOPT_HAS_TORCH)
  list(APPEND SYMOPT_COMPILED_COMPONENTS Torch)
endif()
configure_package_config_file(cmake/symoptConfig.cmake.in
  ${PROJECT_BINARY_DIR}/symoptConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/symopt)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/symoptConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/symoptConfig.cmake
              ${PROJECT_BINARY_DIR}/symoptConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/symopt)
