# SPDX-License-Identifier: MIT
# DS_CHECK_CFLAG(FLAG, ACTION-IF-OK): does the C compiler accept FLAG?
AC_DEFUN([DS_CHECK_CFLAG], [
  AS_VAR_PUSHDEF([ds_var], [ds_cv_cflag_$1])
  AC_CACHE_CHECK([whether $CC accepts $1], [ds_var], [
    ds_save_CFLAGS="$CFLAGS"
    CFLAGS="$CFLAGS $1 -Werror"
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [])], [AS_VAR_SET([ds_var], [yes])], [AS_VAR_SET([ds_var], [no])])
    CFLAGS="$ds_save_CFLAGS"])
  AS_VAR_IF([ds_var], [yes], [$2])
  AS_VAR_POPDEF([ds_var])
])
