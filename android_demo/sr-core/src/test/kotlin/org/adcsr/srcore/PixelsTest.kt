package org.adcsr.srcore

import kotlin.test.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals

class PixelsTest {
    @Test
    fun everyByteSurvivesTheRoundTrip() {
        val argb = IntArray(256) { v -> (0x7F shl 24) or (v shl 16) or ((255 - v) shl 8) or ((v * 7) and 0xFF) }
        val img = Pixels.toImage(argb, 16, 16)
        assertEquals(3, img.channels)
        val back = Pixels.toArgb(img)
        assertContentEquals(IntArray(256) { argb[it] or (0xFF shl 24) }, back)  // opaque on the way out
    }

    @Test
    fun roundingIsHalfToEvenAndClamped() {
        assertEquals(0, Pixels.toByte(-0.5f))
        assertEquals(255, Pixels.toByte(1.5f))
        assertEquals(128, Pixels.toByte(0.5f))  // 127.5 → 128 (even)
        assertEquals(2, Pixels.toByte(2.5f / 255f))  // 2.5 → 2 (even)
    }
}
