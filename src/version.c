/* version.c */
#include "upulsar/upulsar.h"

const char *upulsar_version(void) { return UPULSAR_VERSION_STR; }
