/* conf_keys.h -- the shape of the configuration table (conf_keys.c):
 * one row per key, which conf.c reads to parse, validate, format, default
 * and document it. @internal */
#ifndef UP_CONF_KEYS_H
#define UP_CONF_KEYS_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    K_STR,   /* char[size]; optional prefix check */
    K_INT,   /* int */
    K_INT64, /* int64_t */
    K_BOOL,  /* bool */
    K_ENUM,  /* int-sized enum, names in .enums */
    K_MSFRAC /* milliseconds with up to 3 decimals, stored as int microseconds */
} kind_t;

typedef struct {
    const char *name;
    int value;
} enum_name_t;

#define F_SECRET 0x1 /* never printed; get returns "***" */
#define F_URL 0x2    /* must start with pulsar:// or pulsar+ssl:// */
#define F_KV 0x4     /* "k=v,k2=v2": non-empty keys, at most UP_MAX_PRODUCER_PROPS */
#define F_FILE_AT 0x8 /* "@path": the value is the content of that file, read at set */

typedef struct {
    const char *key;
    kind_t kind;
    size_t off;
    size_t size;      /* field size (K_STR: buffer size incl. NUL) */
    const char *def;  /* default, as the string set() would accept */
    int64_t min, max; /* K_INT/K_INT64; K_MSFRAC in microseconds */
    const enum_name_t *enums;
    int flags;
    char scope;       /* 'C' client key, 'P' producer key */
    const char *unit;
    const char *desc;
    const char *java; /* Java client equivalent */
} conf_key_t;

/** Every key, in the order of the reference (client keys, then producer
 *  keys); a key's index is its bit in struct upulsar_conf.set_keys. */
extern const conf_key_t up_conf_keys[];
extern const size_t up_conf_nkeys;

#endif
