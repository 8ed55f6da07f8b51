package org.adcsr.demo

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.viewModels
import org.adcsr.demo.ui.AdcsrApp

class MainActivity : ComponentActivity() {
    private val viewModel: UpscaleViewModel by viewModels()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent { AdcsrApp(viewModel) }
    }
}
