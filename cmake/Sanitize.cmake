# KUIPER_SANITIZE and KUIPER_FUZZ: instrumentation for every C++ target of the project.
if(KUIPER_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "KUIPER_FUZZ needs clang (libFuzzer), e.g. -DCMAKE_CXX_COMPILER=clang++-14")
  endif()
  if(KUIPER_WITH_CUDA)
    message(FATAL_ERROR "KUIPER_FUZZ builds CPU code only: add -DKUIPER_CUDA=OFF")
  endif()
  if(NOT KUIPER_SANITIZE)
    set(KUIPER_SANITIZE address,undefined)
  endif()
  # Coverage instrumentation for the libraries; only the fuzz targets link libFuzzer's main.
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link>)
endif()

if(KUIPER_SANITIZE)
  # -fno-sanitize-recover: a UBSan finding fails the test instead of printing and going on.
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${KUIPER_SANITIZE}>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=all>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=${KUIPER_SANITIZE})
  message(STATUS "kuiper: sanitizers ${KUIPER_SANITIZE}")
endif()
