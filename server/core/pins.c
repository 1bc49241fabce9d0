#include "core/pins.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A handful of concurrent downloads at most: a list is enough. */
typedef struct pin {
    struct pin *next;
    int count;
    char *run_id;
    char *checkpoint_id;
} pin;

struct srv_pins {
    pthread_mutex_t mu;
    pin *head;
};

srv_pins *srv_pins_create(void)
{
    srv_pins *p = calloc(1, sizeof *p);
    if (p)
        pthread_mutex_init(&p->mu, NULL);
    return p;
}

void srv_pins_destroy(srv_pins *p)
{
    if (!p)
        return;
    for (pin *x = p->head, *next; x; x = next) {
        next = x->next;
        free(x->run_id);
        free(x->checkpoint_id);
        free(x);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static pin **find(srv_pins *p, const char *run_id, const char *checkpoint_id)
{
    pin **at = &p->head;
    while (*at && (strcmp((*at)->run_id, run_id) != 0 ||
                   strcmp((*at)->checkpoint_id, checkpoint_id) != 0))
        at = &(*at)->next;
    return at;
}

bool srv_pins_add(srv_pins *p, const char *run_id, const char *checkpoint_id)
{
    bool ok = true;
    pthread_mutex_lock(&p->mu);
    pin **at = find(p, run_id, checkpoint_id);
    if (*at) {
        (*at)->count++;
    } else {
        pin *x = calloc(1, sizeof *x);
        if (x && (x->run_id = strdup(run_id)) && (x->checkpoint_id = strdup(checkpoint_id))) {
            x->count = 1;
            x->next = p->head;
            p->head = x;
        } else {
            if (x) {
                free(x->run_id);
                free(x);
            }
            ok = false;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return ok;
}

void srv_pins_remove(srv_pins *p, const char *run_id, const char *checkpoint_id)
{
    pthread_mutex_lock(&p->mu);
    pin **at = find(p, run_id, checkpoint_id);
    pin *x = *at;
    if (x && --x->count == 0) {
        *at = x->next;
        free(x->run_id);
        free(x->checkpoint_id);
        free(x);
    }
    pthread_mutex_unlock(&p->mu);
}

bool srv_pins_has(srv_pins *p, const char *run_id, const char *checkpoint_id)
{
    pthread_mutex_lock(&p->mu);
    bool has = *find(p, run_id, checkpoint_id) != NULL;
    pthread_mutex_unlock(&p->mu);
    return has;
}
