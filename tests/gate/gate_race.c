/* A planted data race: built only in the ThreadSanitizer build, where ctest
 * must report this binary as failed (it is registered with WILL_FAIL). */
#include <criterion/criterion.h>
#include <pthread.h>

static int counter; /* written by two threads without synchronisation */

static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        counter++;
    return NULL;
}

Test(gate, a_data_race_fails_the_test)
{
    pthread_t a, b;
    cr_assert_eq(pthread_create(&a, NULL, bump, NULL), 0);
    cr_assert_eq(pthread_create(&b, NULL, bump, NULL), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
}
