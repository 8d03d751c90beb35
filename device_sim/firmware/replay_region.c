/*
 * The replay region of an Arm platform (platform.h): memory the emulator's loader fills with a
 * replay image before the core starts (QEMU: -device loader; Renode: sysbus LoadBinary). Its
 * place is the target profile's (replay_origin, replay_bytes), passed by device_sim/crossbuild.py.
 */
#include <stdint.h>

#include "platform.h"

uint32_t tag_replay_region(const uint8_t **base)
{
#if defined(TAG_REPLAY_ORIGIN) && defined(TAG_REPLAY_BYTES)
    *base = (const uint8_t *)(uintptr_t)(TAG_REPLAY_ORIGIN);
    return (uint32_t)(TAG_REPLAY_BYTES);
#else
    *base = (const uint8_t *)0;
    return 0u; /* the platform has none */
#endif
}
