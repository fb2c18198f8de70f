/* entity_name.h -- Pulsar's rule for tenant, cluster and namespace names
 * (NamedEntity.checkName in the broker): letters, digits, '_' and "-=:."
 * only. Shared by the client (topic.c, which refuses a topic the broker
 * would refuse) and the test broker (which refuses it as Pulsar does).
 * @internal */
#ifndef UP_ENTITY_NAME_H
#define UP_ENTITY_NAME_H
#include <stdbool.h>
#include <stddef.h>

/** @p n bytes at @p s form a name the rule allows, and at least one. */
static inline bool up_entity_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '=' || ch == ':' || ch == '.'))
            return false;
    }
    return true;
}
#endif
