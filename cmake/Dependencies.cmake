# Every dependency comes from a Debian package (see README.md).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(glog REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(ICU REQUIRED COMPONENTS uc)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)

# Armadillo's own library is a thin wrapper whose BLAS is whatever libblas.so.3 the system's
# alternatives point at (reference BLAS on some machines). We bypass the wrapper and link
# OpenBLAS directly, so every arma:: and cblas_ call lands in OpenBLAS; test/base/blas_test.cpp
# checks that at run time.
find_package(Armadillo REQUIRED)
find_library(OPENBLAS_LIBRARY NAMES openblas REQUIRED
             PATHS /usr/lib/x86_64-linux-gnu/openblas-pthread /usr/lib/aarch64-linux-gnu/openblas-pthread)
find_path(OPENBLAS_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas-pthread openblas REQUIRED)
add_library(kuiper_blas INTERFACE)
target_include_directories(kuiper_blas SYSTEM INTERFACE ${ARMADILLO_INCLUDE_DIRS} ${OPENBLAS_CBLAS_INCLUDE})
target_compile_definitions(kuiper_blas INTERFACE ARMA_DONT_USE_WRAPPER ARMA_USE_BLAS ARMA_USE_LAPACK ARMA_NO_DEBUG)
target_link_libraries(kuiper_blas INTERFACE ${OPENBLAS_LIBRARY})

# cpp-httplib (libcpp-httplib-dev) for llama_server, which is built only where it is found.
pkg_check_modules(CPP_HTTPLIB IMPORTED_TARGET cpp-httplib)
if(CPP_HTTPLIB_FOUND)
  message(STATUS "cpp-httplib ${CPP_HTTPLIB_VERSION} found: building llama_server")
else()
  message(STATUS "cpp-httplib not found (apt-get install libcpp-httplib-dev): llama_server is not built")
endif()
