# cmake --install the build into a temp prefix, then configure, build and run
# tests/consumer against it with find_package(ckptw CONFIG).
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
  endif()
  message(STATUS "${out}")
endfunction()
run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    "-Dckptw_DIR=${prefix}/lib/cmake/ckptw" "-DTorch_DIR=${TORCH_DIR}" "-DCaffe2_DIR=${TORCH_DIR}/../Caffe2"
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer" "${WORK_DIR}/checkpoint")
if(NOT EXISTS "${WORK_DIR}/checkpoint/checkpoint_0.pt")
  message(FATAL_ERROR "consumer did not write checkpoint_0.pt")
endif()
