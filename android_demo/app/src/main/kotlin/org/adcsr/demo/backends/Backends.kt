package org.adcsr.demo.backends

import org.adcsr.srcore.Backend
import org.adcsr.srcore.ModelContract
import org.adcsr.srcore.SrModel
import java.io.File

/** A backend that cannot run on this phone (no HTP, a runtime that refuses the model): its
 * message is what the settings screen shows beside it. */
class UnsupportedBackend(message: String, cause: Throwable? = null) : Exception(message, cause)

object Backends {
    /** Fastest first: the NPU, then the CPU. */
    fun byPreference(contract: ModelContract): List<Backend> =
        contract.backends.sortedBy { if (it.kind == "onnxruntime-qnn" || it.kind == "executorch-qnn") 0 else 1 }

    fun open(backend: Backend, contract: ModelContract, dir: File): SrModel {
        val file = File(dir, backend.entry.path)
        return try {
            when (backend.kind) {
                "onnxruntime-qnn" -> OrtQnnModel(file, contract, backend.label)
                "executorch-xnnpack", "executorch-qnn" -> ExecuTorchModel(file, contract, backend.label)
                else -> throw UnsupportedBackend("${backend.label}: this app has no ${backend.kind} runtime")
            }
        } catch (e: UnsupportedBackend) {
            throw e
        } catch (e: Exception) {  // the runtime's own errors (no HTP on this SoC, a QNN version mismatch, …)
            throw UnsupportedBackend("${backend.label} is not available on this phone: ${e.message ?: e.javaClass.simpleName}", e)
        } catch (e: UnsatisfiedLinkError) {
            throw UnsupportedBackend("${backend.label} is not available on this phone (its native library did not load)", e)
        }
    }

    /** The first backend, fastest first, that opens here, and why the others did not. */
    fun openFastest(contract: ModelContract, dir: File): Pair<SrModel, Map<String, String>> {
        val refused = LinkedHashMap<String, String>()
        for (b in byPreference(contract)) {
            try {
                return open(b, contract, dir) to refused
            } catch (e: UnsupportedBackend) {
                refused[b.id] = e.message ?: b.label
            }
        }
        throw UnsupportedBackend(refused.values.joinToString("; "))
    }
}
