package org.adcsr.srcore

import java.io.ByteArrayOutputStream
import java.io.OutputStream
import java.util.zip.CRC32
import java.util.zip.Deflater
import java.util.zip.DeflaterOutputStream

/**
 * An 8-bit RGB PNG written row by row, so an upscaled photo never has to exist as one bitmap:
 * Android's `Bitmap.compress` needs the whole image in memory, and a ×4 result of a 12 MP photo
 * is 192 MP. Hand-written because neither the platform nor the JVM has a streaming PNG encoder;
 * the format is small (signature, IHDR, zlib-deflated IDAT chunks of filter byte + RGB rows, IEND).
 */
class PngWriter(private val out: OutputStream, val width: Int, val height: Int, level: Int = 6) : AutoCloseable {
    private var rowsWritten = 0
    private val pending = ByteArrayOutputStream()
    private val deflater = Deflater(level)
    private val zlib = DeflaterOutputStream(ChunkSink(), deflater, 1 shl 16)

    init {
        require(width > 0 && height > 0) { "PNG sides must be positive, got ${width}×$height" }
        out.write(byteArrayOf(-119, 80, 78, 71, 13, 10, 26, 10))
        val ihdr = ByteArrayOutputStream()
        ihdr.writeInt(width)
        ihdr.writeInt(height)
        ihdr.write(byteArrayOf(8, 2, 0, 0, 0))  // 8 bits, RGB, deflate, adaptive filtering, no interlace
        chunk("IHDR", ihdr.toByteArray())
    }

    /** Rows of ARGB_8888 pixels (alpha ignored), `rows × width` of them. */
    fun writeRows(argb: IntArray) {
        require(argb.size % width == 0) { "${argb.size} pixels is not whole rows of $width" }
        val rows = argb.size / width
        check(rowsWritten + rows <= height) { "PNG of $height rows given ${rowsWritten + rows}" }
        val line = ByteArray(1 + 3 * width)  // filter type 0 (None)
        for (r in 0 until rows) {
            for (x in 0 until width) {
                val p = argb[r * width + x]
                line[1 + 3 * x] = (p ushr 16).toByte()
                line[2 + 3 * x] = (p ushr 8).toByte()
                line[3 + 3 * x] = p.toByte()
            }
            zlib.write(line)
        }
        rowsWritten += rows
    }

    override fun close() {
        check(rowsWritten == height) { "PNG closed after $rowsWritten of $height rows" }
        zlib.finish()
        flushIdat()
        deflater.end()
        chunk("IEND", ByteArray(0))
        out.flush()
    }

    private inner class ChunkSink : OutputStream() {
        override fun write(b: Int) = write(byteArrayOf(b.toByte()), 0, 1)
        override fun write(b: ByteArray, off: Int, len: Int) {
            pending.write(b, off, len)
            if (pending.size() >= 1 shl 16) flushIdat()
        }
    }

    private fun flushIdat() {
        if (pending.size() > 0) chunk("IDAT", pending.toByteArray())
        pending.reset()
    }

    private fun chunk(type: String, data: ByteArray) {
        val head = ByteArrayOutputStream()
        head.writeInt(data.size)
        out.write(head.toByteArray())
        val typeBytes = type.toByteArray(Charsets.US_ASCII)
        val crc = CRC32()
        crc.update(typeBytes)
        crc.update(data)
        out.write(typeBytes)
        out.write(data)
        val tail = ByteArrayOutputStream()
        tail.writeInt(crc.value.toInt())
        out.write(tail.toByteArray())
    }

    private fun ByteArrayOutputStream.writeInt(v: Int) {
        write(v ushr 24); write(v ushr 16); write(v ushr 8); write(v)
    }
}
