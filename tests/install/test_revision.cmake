# cmake/revision.cmake, which gives --version its "(git REVISION)":
# outside a git checkout (a release tarball) the build still works and
# says "unknown", including a tarball unpacked inside some other
# repository; -DCAIRN_GIT_REVISION wins; in this checkout, the commit.
#
#   cmake -DSOURCE_DIR=... -DWORK_DIR=... -DGIT=... -P test_revision.cmake
set(script ${SOURCE_DIR}/cmake/revision.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/tarball)

function(revision_of want)
  cmake_parse_arguments(A "" "SRC;GIT;REVISION" "" ${ARGN})
  execute_process(COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${A_SRC} -DOUTPUT=${WORK_DIR}/r.h
    -DGIT=${A_GIT} -DREVISION=${A_REVISION} -P ${script} RESULT_VARIABLE rc)
  file(READ ${WORK_DIR}/r.h text)
  if(NOT rc EQUAL 0 OR NOT text MATCHES "#define CAIRN_GIT_REVISION \"${want}\"")
    message(FATAL_ERROR "revision of ${A_SRC} (git '${A_GIT}', '${A_REVISION}'): exit ${rc}, "
      "want /${want}/, got:\n${text}")
  endif()
  message(STATUS "${A_SRC} (git '${A_GIT}', '${A_REVISION}'): ${text}")
endfunction()

revision_of("unknown" SRC ${WORK_DIR}/tarball GIT "${GIT}")
revision_of("unknown" SRC ${WORK_DIR}/tarball GIT "")
revision_of("1\\.0\\.0-debian1" SRC ${WORK_DIR}/tarball GIT "${GIT}" REVISION "1.0.0-debian1")
if(GIT AND EXISTS ${SOURCE_DIR}/.git)
  # A directory inside a checkout is not its top: no borrowed commit.
  revision_of("unknown" SRC ${SOURCE_DIR}/docs GIT "${GIT}")
  revision_of("[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]+(\\+dirty)?"
    SRC ${SOURCE_DIR} GIT "${GIT}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
